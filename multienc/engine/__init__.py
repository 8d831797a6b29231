"""The engine: the only Python that touches the C extension (``multienc.engine._C``, and
``multienc.engine._C_cuda`` on demand). Everything above it speaks in numpy arrays and these objects:

- :class:`~multienc.engine.encoder.Encoder`: one transformer encoder (forward, backward, weights).
- :class:`~multienc.engine.tokenization.Tokenizer`: WordPiece / byte-level BPE in C, HF semantics.
- :class:`~multienc.engine.task_model.TaskModel`: encoders + pooling + combiner + head + loss +
  optimizer, one C call per training step.
- :mod:`~multienc.engine.device`: which device computes (one place decides).

Uses :mod:`multienc.formats` (weight files) and nothing else of multienc.
"""
import os as _os

from multienc.engine import native as _native

# OpenMP threads that busy-wait between parallel regions steal the cores from the
# threads still working whenever the machine has other load (measured: a MiniLM
# training step 8x slower on 2 busy cores). Sleep instead, unless the user chose.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The C kernels' vector level: the CPU's best unless MULTIENC_CPU_LEVEL lowers it (csrc/cpu/vmath.c)
if _os.environ.get("MULTIENC_CPU_LEVEL", "") not in ("", "0", "1", "2"):
    raise ValueError(f"MULTIENC_CPU_LEVEL must be 0 (baseline x86-64), 1 (AVX2 + FMA) or 2 (AVX-512; with "
                     f"AVX512-BF16 where the CPU has it), got {_os.environ['MULTIENC_CPU_LEVEL']!r}")
_native.preload()

from multienc.engine.device import (PRECISIONS, auto_device, bf16_available, check_device,  # noqa: E402
                                    check_precision, cuda_available, resolve_device)
from multienc.engine.encoder import (Encoder, ModelConfigError, engine_config, hidden_dropout_key,  # noqa: E402
                                     read_config)
from multienc.engine.native import build_info  # noqa: E402
from multienc.engine.profiling import op_profile  # noqa: E402
from multienc.engine.task_model import TaskModel  # noqa: E402
from multienc.engine.tokenization import Encoding, Tokenizer, TokenizerFileError, spm_folder_tokenizer_json  # noqa: E402

__all__ = ["Encoder", "ModelConfigError", "engine_config", "hidden_dropout_key", "read_config", "Tokenizer", "TokenizerFileError",
           "spm_folder_tokenizer_json",
           "Encoding", "TaskModel", "op_profile", "auto_device", "check_device", "PRECISIONS", "bf16_available", "check_precision", "cuda_available", "resolve_device", "build_info"]
