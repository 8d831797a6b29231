"""multienc: fine-tune several pretrained transformer encoders together.

The engine (forward, backward, optimizer, tokenizers) is C, with an optional
CUDA backend; this package is the Python API around it. See README.md for the
user guide.
"""
import os as _os

from multienc import _blas

# OpenMP threads that busy-wait between parallel regions steal the cores from the
# threads still working whenever the machine has other load (measured: a MiniLM
# training step 8x slower on 2 busy cores). Sleep instead, unless the user chose.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_blas.preload()

from multienc import _C  # noqa: E402
from multienc.device import cuda_available  # noqa: E402
from multienc.random import set_seed  # noqa: E402

__version__ = "0.1.0"


def build_info() -> dict:
    """What this install of multienc was built with.

    Keys: ``cuda`` (bool: the CUDA backend was built), ``cuda_version`` (the toolkit's
    "X.Y", "" without CUDA), ``cuda_archs``, ``blas``, ``openmp``, ``openmp_max_threads``.
    Whether a GPU is usable now is :func:`cuda_available`.
    """
    return dict(_C.build_info())


__all__ = ["build_info", "cuda_available", "set_seed", "__version__"]
