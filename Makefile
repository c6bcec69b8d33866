# The front door: `make train` runs the default job, `make test` runs every test but CUDA ones.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CONFIG ?= configs/default.toml
CMAKE_ARGS ?=

.PHONY: setup configure build train test test-asan test-tsan check fuzz bench clean

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

# The unit and integration tests built with AddressSanitizer + UndefinedBehaviorSanitizer (halt on the first
# error, leak checking on), in a build directory of their own.
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Open MPI keeps allocations until exit (in components it has unloaded, so they cannot be suppressed by name):
# the `mpi` tests run with leak checking off, everything else with it on. The mpirun test binaries run at 2 ranks only:
# 4 and 8 take the same code paths (make test runs them) and added 8 and 15 minutes on two cores.
ASAN_MPI_ENV = ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Left out of this build: bench/, and tests/reference, which compare numerics with Python packages (their C++ paths
# run instrumented in the unit and integration tests and the fuzzers). SlurmLaunch tests the launch scripts and
# Slurm; the binary's own paths in it (stop, resume, mpirun) run here in StopSignal, MpiStopSignal and MpiCli.
test-asan: setup
	cmake -S . -B $(BUILD)-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMTRAIN_SANITIZE=address,undefined \
	  -DMEMTRAIN_BENCH=OFF -DMEMTRAIN_REFERENCE_TESTS=OFF $(CMAKE_ARGS)
	cmake --build $(BUILD)-asan -j $(JOBS)
	$(ASAN_ENV) ctest --test-dir $(BUILD)-asan -LE "cuda|slow|mpi" -E '^SlurmLaunch\.' --output-on-failure -j $(JOBS)
	$(ASAN_MPI_ENV) ctest --test-dir $(BUILD)-asan -L mpi -E '_np[48]$$' --output-on-failure

# The tests of the threaded parts (label `threads`) built with ThreadSanitizer (only their executables).
test-tsan: setup
	cmake -S . -B $(BUILD)-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMTRAIN_SANITIZE=thread $(CMAKE_ARGS)
	cmake --build $(BUILD)-tsan -j $(JOBS) --target memtrain_threads_tests
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --test-dir $(BUILD)-tsan -L threads --output-on-failure -j $(JOBS)

# What CI runs: every test, then the sanitizer builds and the fuzzers.
check: test test-asan test-tsan fuzz

# Every libFuzzer target (tests/fuzz) for FUZZ_SECONDS each under ASan + UBSan, built with clang in build-fuzz.
FUZZ_SECONDS ?= 30
fuzz: setup
	FUZZ_JOBS=$(JOBS) bash tests/fuzz/run_fuzzers.sh $(FUZZ_SECONDS)

bench: build
	./$(BUILD)/bench/cpu_step

clean:
	rm -rf $(BUILD)
