"""multienc: fine-tune several pretrained transformer encoders together.

The engine (forward, backward, optimizer, tokenizers) is C, with an optional
CUDA backend; this package is the Python API around it. See README.md for the
user guide.
"""
from multienc import _blas

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
