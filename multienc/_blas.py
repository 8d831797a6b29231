"""Make OpenBLAS from the scipy-openblas32 wheel visible before ``multienc._C`` loads.

The extension records an rpath to the wheel's library folder, but an editable
install built in an isolated environment records a folder that no longer
exists; loading the library by absolute path first (RTLD_GLOBAL) lets the
dynamic loader satisfy ``_C``'s dependency by its soname in every layout.
"""
import ctypes
import os

import scipy_openblas32


def preload() -> None:
    """Load libscipy_openblas.so globally (idempotent)."""
    path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
