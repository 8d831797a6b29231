#!/usr/bin/env bash
# Run on a machine with network access BEFORE a GPU run: downloads the wheels
# that tests/gpu/run_all.sh installs on the GPU machine (which has no package
# registry) into .whl/ (ignored by git; pass it in the device call's `carry`).
# The GPU image already has numpy, wheel, pytest, torch and transformers;
# multienc additionally needs scipy-openblas32 (the CPU BLAS), and the build
# needs the setuptools that pyproject's build-system asks for (the image's
# version is not known here). Both are taken at requirements/constraints.txt's
# pins, the versions every venv of this checkout uses.
# Usage: tests/gpu/fetch_wheels.sh [DEST]   (PYTHON=... to choose the pip)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=$(realpath -m "${1:-.whl}")
py=${PYTHON:-python3}
pin() { grep -E "^$1==" requirements/constraints.txt || { echo "no pin for $1 in requirements/constraints.txt" >&2; exit 1; }; }
specs=("$(pin scipy-openblas32)" "$(pin setuptools)")
mkdir -p "$dest"
(cd /tmp && "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "${specs[@]}")  # outside the checkout: pip reads no project config
ls -l "$dest"
