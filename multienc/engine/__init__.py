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
_native.preload()

from multienc.engine.device import auto_device, check_device, cuda_available, resolve_device  # noqa: E402
from multienc.engine.encoder import (Encoder, ModelConfigError, engine_config, hidden_dropout_key,  # noqa: E402
                                     read_config)
from multienc.engine.native import build_info  # noqa: E402
from multienc.engine.profiling import op_profile  # noqa: E402
from multienc.engine.task_model import TaskModel  # noqa: E402
from multienc.engine.tokenization import Encoding, Tokenizer, TokenizerFileError, spm_folder_tokenizer_json  # noqa: E402

__all__ = ["Encoder", "ModelConfigError", "engine_config", "hidden_dropout_key", "read_config", "Tokenizer", "TokenizerFileError",
           "spm_folder_tokenizer_json",
           "Encoding", "TaskModel", "op_profile", "auto_device", "check_device", "cuda_available", "resolve_device", "build_info"]
