"""Loading the C extension: OpenBLAS from the scipy-openblas32 wheel made visible before
``multienc.engine._C`` loads, and what the extension was built with.

The extension records an rpath to the wheel's library folder, but an editable
install built in an isolated environment records a folder that no longer
exists; loading the library by absolute path first (RTLD_GLOBAL) lets the
dynamic loader satisfy ``_C``'s dependency by its soname in every layout.
"""
import ctypes
import os

import scipy_openblas32


def _library_path() -> str:
    return os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")


def preload() -> None:
    """Load libscipy_openblas.so globally (idempotent)."""
    path = _library_path()
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def blas_core() -> str:
    """The kernel set OpenBLAS chose for this CPU when it loaded ("SkylakeX", "Haswell", ...;
    ``OPENBLAS_CORETYPE`` overrides its choice)."""
    lib = ctypes.CDLL(_library_path(), mode=ctypes.RTLD_GLOBAL)
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    return lib.scipy_openblas_get_corename().decode("ascii", "replace")


def build_info() -> dict:
    """What this install of multienc was built with.

    Keys: ``cuda`` (bool: the CUDA backend was built), ``cuda_version`` (the toolkit's
    "X.Y", "" without CUDA), ``cuda_archs``, ``blas``, ``blas_core`` (the kernels OpenBLAS runs on
    this CPU, :func:`blas_core`), ``openmp``, ``openmp_max_threads``.
    Whether a GPU is usable now is :func:`multienc.engine.device.cuda_available`.
    """
    from multienc.engine import _C  # after preload()
    return dict(_C.build_info(), blas_core=blas_core())
