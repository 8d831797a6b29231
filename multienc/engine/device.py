"""Where the engine computes: ``"cpu"``, ``"cuda"`` (= ``"cuda:0"``) or ``"cuda:N"``.

The CUDA backend is the extension ``multienc.engine._C_cuda``, built only where nvcc
was found at install time and imported only here and when a CUDA encoder is
created, so that ``import multienc`` never needs the CUDA libraries.

One place decides: :func:`resolve_device` (an explicit ``device=``, else
``$MULTIENC_DEVICE``, else :func:`auto_device`). Language models are created
on that device; heads and the trainer take the device of their language models,
and a ``device=`` given to them that differs is an error naming both
(:func:`check_device`).
"""
from __future__ import annotations

import os
import re
from typing import Optional

from multienc.engine import _C

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


#: The NVIDIA kernel driver's control device: without it no GPU is usable, and the CUDA
#: backend (which loads cuBLAS) is not even imported to ask.
NVIDIA_CONTROL_DEVICE = "/dev/nvidiactl"


def cuda_available() -> bool:
    """Whether this install has the CUDA backend and a usable GPU (compute capability >= 8.0) is visible now.

    Without CUDA in the build or without the NVIDIA driver the answer needs no CUDA library."""
    if not _C.build_info()["cuda"] or not os.path.exists(NVIDIA_CONTROL_DEVICE):
        return False
    try:
        from multienc.engine import _C_cuda
    except ImportError:
        return False
    return _C_cuda.device_count() > 0


def auto_device(family: Optional[int] = None) -> str:
    """What automatic choice picks: ``"cuda"`` when :func:`cuda_available` and the whole task model
    (encoder, pooling, combiner, head, loss, CRF, optimizer) runs on this build's CUDA backend, else
    ``"cpu"``. ``family``: the engine family code of the language model being placed
    (``Encoder.engine_config["family"]``); None asks for every family. The CUDA backend runs BERT,
    RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT and ALBERT; MPNet, DeBERTa-v2/v3 and ModernBERT stay on
    the CPU."""
    ask = -1 if family is None else int(family)
    # task 2 (task_model.TASK_CRF, not imported: task_model imports this module's importers) asks for
    # every head's ops: the CRF's and, under them, those the other heads need
    return "cuda" if cuda_available() and _C.model_runs_on("cuda", 2, ask) else "cpu"


def resolve_device(device: Optional[str] = None, family: Optional[int] = None) -> str:
    """The device to use: ``device`` if given, else ``$MULTIENC_DEVICE``, else :func:`auto_device`
    for ``family`` (the engine family code of the language model being placed; None: any).

    Raises ValueError for a string that is not ``cpu``, ``cuda`` or ``cuda:N``. Whether the
    CUDA device exists is checked when an encoder is created on it (RuntimeError).
    """
    source = "device"
    if device is None:
        device = os.environ.get("MULTIENC_DEVICE", "").strip() or None
        source = "MULTIENC_DEVICE"
    if device is None:
        return auto_device(family)
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"{source} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


#: The precisions of the linear layers ``ModelTrainer.train(precision=...)`` accepts.
PRECISIONS = ("fp32", "bf16")


def bf16_available() -> bool:
    """Whether this CPU runs ``precision="bf16"``: it needs AVX512-BF16 (``avx512_bf16`` in /proc/cpuinfo)."""
    return _C.cpu_has_bf16()


def check_precision(precision: str, device: str) -> str:
    """``precision`` when the model on ``device`` can train in it; ValueError for a name other than
    ``"fp32"`` / ``"bf16"``, NotImplementedError for bf16 where it does not run (another device than
    the CPU, or a CPU without AVX512-BF16)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and device != "cpu":
        raise NotImplementedError(f"precision='bf16' is implemented on the CPU only, not on {device!r} yet; "
                                  f"use precision='fp32', or create the language models with device='cpu'")
    if precision == "bf16" and not bf16_available():
        raise NotImplementedError("precision='bf16' needs a CPU with AVX512-BF16 (the avx512_bf16 flag in "
                                  "/proc/cpuinfo), and this CPU has none; use precision='fp32'")
    return precision


def same_device(a: str, b: str) -> bool:
    """Whether two device strings name one device (``"cuda"`` is ``"cuda:0"``)."""
    return a == b or {a, b} == {"cuda", "cuda:0"}


def check_device(requested: Optional[str], actual: str, who: str, where: str) -> str:
    """``actual`` (the device of ``where``, e.g. its language models) when ``requested`` is None or
    names the same device; else ValueError naming both, for ``who`` (e.g. ``"TextClassifier"``)."""
    if requested is None:
        return actual
    wanted = resolve_device(requested)
    if not same_device(wanted, actual):
        raise ValueError(f"{who}(device={requested!r}): {where} on {actual!r}; create the language models "
                         f"with device={requested!r} (LanguageModel(..., device={requested!r})) or leave device out")
    return actual
