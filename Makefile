# The front door: `make train` runs the default job, `make test` runs every test but CUDA ones.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CONFIG ?= configs/default.toml
CMAKE_ARGS ?=

.PHONY: setup configure build train test bench clean

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

configure: setup $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

train: build
	./$(BUILD)/memtrain train $(CONFIG)

test: build
	ctest --test-dir $(BUILD) -LE cuda --output-on-failure -j $(JOBS)

bench: build
	./$(BUILD)/bench/cpu_step

clean:
	rm -rf $(BUILD)
