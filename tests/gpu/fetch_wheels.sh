#!/usr/bin/env bash
# Run on a machine with network access BEFORE a GPU run: downloads the wheels
# that tests/gpu/run_all.sh installs on the GPU machine (which has no package
# registry) into .whl/ (ignored by git; pass it in the device call's `carry`).
# The GPU image already has numpy, setuptools, wheel, pytest, torch and
# transformers; multienc additionally needs scipy-openblas32 (the CPU BLAS).
# Usage: tests/gpu/fetch_wheels.sh [DEST]   (PYTHON=... to choose the pip)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-.whl}
py=${PYTHON:-python3}
# the version this checkout builds against here, else the newest
version=$("$py" -m pip show scipy-openblas32 2>/dev/null | awk '/^Version:/{print $2}') || true
spec="scipy-openblas32${version:+==$version}"
mkdir -p "$dest"
(cd /tmp && "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$OLDPWD/$dest" "$spec")
ls -l "$dest"
