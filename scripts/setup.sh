#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, run and test memtrain. Idempotent: a machine that already has
# every package runs no apt-get at all.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libabsl-dev libopenblas-dev liblapacke-dev libtomlplusplus-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  fortunes                      # the default corpus: /usr/share/games/fortunes
  python3 python3-torch python3-numpy   # tests/reference: PyTorch cross-checks
  python3-venv                    # tests/reference: a venv for the safetensors package (below)
  clang libclang-rt-14-dev        # tests/fuzz: libFuzzer
  openmpi-bin libopenmpi-dev      # parallel/: MPI communicators; tests/mpi run under mpirun
  libhdf5-openmpi-dev python3-h5py  # checkpoint/: parallel HDF5 checkpoints; tests/reference reads them with h5py
  libicu-dev                      # data/: Unicode character classes for BPE pre-tokenization
  liburing-dev                    # offload/: io_uring for the SSD swap file
  libisal-dev                     # checkpoint/: Reed-Solomon erasure coding of in-memory snapshots
  libpng-dev                      # trainer/: `memtrain plot` writes PNG
  slurmctld slurmd slurm-client munge libpmix-dev  # launch/: the launch tests start a one-node Slurm (local-slurm)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's torch uses whatever libblas.so.3 points to; the reference BLAS makes it 15x slower (see DESIGN.md).
if command -v update-alternatives >/dev/null; then
  blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/ {print $2}')
  case "$blas" in *openblas*|"") ;; *) echo "setup: warning: libblas.so.3 is $blas, not OpenBLAS";; esac
fi

# tests/reference: Hugging Face's `safetensors` and `tokenizers` packages and TensorBoard (its event-file reader),
# which Debian 12 does not package, in a venv that also sees Debian's torch and numpy. Tests that need them are
# skipped (saying so) where they could not be installed.
pyref="${MEMTRAIN_PYREF:-$HOME/.cache/memtrain/pyref}"
if ! "$pyref/bin/python" -c "import safetensors, tokenizers, tensorboard" 2>/dev/null; then
  echo "setup: creating $pyref (safetensors, tokenizers and tensorboard for tests/reference)"
  /usr/bin/python3 -m venv --system-site-packages "$pyref" &&
    "$pyref/bin/pip" install -q --disable-pip-version-check "safetensors==0.8.0" "tokenizers==0.23.3" \
      "tensorboard==2.18.0" ||
    echo "setup: warning: could not install the reference packages into $pyref; tests/reference skip what needs them"
fi
