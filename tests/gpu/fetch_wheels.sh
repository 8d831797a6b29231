#!/usr/bin/env bash
# Run on a machine with network access BEFORE a GPU run: downloads the wheels
# that tests/gpu/run_all.sh installs on the GPU machine (which has no package
# registry) into .whl/ (ignored by git; pass it in the device call's `carry`).
# The GPU image already has numpy, wheel, pytest, torch and transformers;
# multienc additionally needs scipy-openblas32 (the CPU BLAS), and the build
# is pinned to a setuptools that still reads pyproject's `license = {text=...}`
# table (newer ones deprecate it, and the image's version is not known here).
# Usage: tests/gpu/fetch_wheels.sh [DEST]   (PYTHON=... to choose the pip)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=$(realpath -m "${1:-.whl}")
py=${PYTHON:-python3}
# the version this checkout builds against here, else the newest
version=$("$py" -m pip show scipy-openblas32 2>/dev/null | awk '/^Version:/{print $2}') || true
specs=("scipy-openblas32${version:+==$version}" "setuptools==75.8.0")
mkdir -p "$dest"
(cd /tmp && "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "${specs[@]}")  # outside the checkout: pip reads no project config
ls -l "$dest"
