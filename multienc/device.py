"""Where the engine computes: ``"cpu"``, ``"cuda"`` (= ``"cuda:0"``) or ``"cuda:N"``.

The CUDA backend is the extension ``multienc._C_cuda``, built only where nvcc
was found at install time and imported only here and when a CUDA encoder is
created, so that ``import multienc`` never needs the CUDA libraries.
"""
from __future__ import annotations

import os
import re
from typing import Optional

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def cuda_available() -> bool:
    """Whether this install has the CUDA backend and a usable GPU (compute capability >= 8.0) is visible now."""
    try:
        from multienc import _C_cuda
    except ImportError:
        return False
    return _C_cuda.device_count() > 0


def resolve_device(device: Optional[str] = None) -> str:
    """The device to use: ``device`` if given, else ``$MULTIENC_DEVICE``, else ``"cuda"``
    when :func:`cuda_available` and ``"cpu"`` otherwise.

    Raises ValueError for a string that is not ``cpu``, ``cuda`` or ``cuda:N``. Whether the
    CUDA device exists is checked when an encoder is created on it (RuntimeError).
    """
    source = "device"
    if device is None:
        device = os.environ.get("MULTIENC_DEVICE", "").strip() or None
        source = "MULTIENC_DEVICE"
    if device is None:
        return "cuda" if cuda_available() else "cpu"
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"{source} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device
