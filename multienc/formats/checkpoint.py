"""The file format of multienc's checkpoints: one safetensors file, written atomically.

The seed's file name ``best-model.pt`` is kept, but the content is safetensors (no pickle,
nothing executed on load). Tensors: ``lm.<i>.<hf name>`` for each LM's encoder weights,
``combiner.*``, ``decoder.*`` and ``crf.*`` for the head. Metadata (string -> string; JSON
values), as :class:`multienc.models.heads.TaskHead` writes it:

- ``multienc_checkpoint``: format version (``"1"``)
- ``head``: the head's class name (``"head"``) and the settings the head itself records
  (num_classes, the MultiEncoder's settings, head ``options``)
- ``language_models``: per LM its hub id / name, pooling, fine_tune, keep_special_tokens,
  max_length, ``config`` (config.json, dropout override included) and ``tokenizer_files``
- ``label_map`` and ``corpus_name`` when the trainer set them

This module knows bytes and metadata only; which classes rebuild a model is the models
layer's business (a registry of heads).
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np

from multienc.formats.safetensors import load_file, read_header, save_file

FORMAT_VERSION = "1"


def write_checkpoint(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename): never a half-written file."""
    save_file(tensors, path, metadata={"multienc_checkpoint": FORMAT_VERSION, **metadata})


def read_checkpoint(path: str) -> Tuple[Dict[str, str], Dict[str, np.ndarray]]:
    """(metadata, tensors) of a checkpoint file, the header validated first; ValueError naming the
    file when it is not a multienc checkpoint of a known format version."""
    _, meta = read_header(path)
    if meta.get("multienc_checkpoint") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a multienc checkpoint (format {meta.get('multienc_checkpoint')!r})")
    return meta, load_file(path)
