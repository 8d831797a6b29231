"""multienc: fine-tune several pretrained transformer encoders together.

The engine (forward, backward, optimizer, tokenizers) is C; this package is
the Python API around it. See README.md for the user guide.
"""
from multienc import _blas

_blas.preload()

from multienc import _C  # noqa: E402
from multienc.random import set_seed  # noqa: E402

__version__ = "0.1.0"


def build_info() -> dict:
    """What this install of multienc was built with (CUDA, BLAS, OpenMP)."""
    return dict(_C.build_info())


__all__ = ["build_info", "set_seed", "__version__"]
