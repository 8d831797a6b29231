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

from typing import Any, Dict, Mapping, Tuple

import numpy as np

from multienc.formats import schema
from multienc.formats.safetensors import load_file, read_header, save_file

FORMAT_VERSION = "1"

__all__ = ["FORMAT_VERSION", "CheckpointError", "write_checkpoint", "read_checkpoint", "parse_metadata",
           "checked_field"]


class CheckpointError(ValueError):
    """A multienc checkpoint's metadata is missing, malformed or disagrees with its tensors;
    ``path`` is the file (or what the checkpoint came from) and ``field`` the metadata field."""

    def __init__(self, path: str, field: str, message: str):
        self.path, self.field = str(path), field
        super().__init__(f"{self.path}: {field}: {message}")


# The metadata envelope; what a head and a language model record inside it is checked by the
# classes that write it (multienc.models), against their own schemas, through checked_field.
_ENVELOPE = {
    "head": schema.Obj({"head": schema.Str(1, 200)}, required=("head",)),
    "language_models": schema.Arr(schema.Obj({}), min_len=1, max_len=64),
    "label_map": schema.MapOf(schema.Int(0, (1 << 31) - 1)),
}


def parse_metadata(metadata: Mapping[str, str], path: str) -> Dict[str, Any]:
    """The checkpoint metadata with its JSON fields parsed and the envelope checked: ``head`` (an
    object naming the head class), ``language_models`` (1 to 64 objects), ``label_map`` (optional,
    label -> non-negative id), ``corpus_name`` (optional). CheckpointError naming the field otherwise."""
    out: Dict[str, Any] = {}
    for key, spec in _ENVELOPE.items():
        if key not in metadata:
            if key == "label_map":
                continue
            raise CheckpointError(path, key, "is missing")
        try:
            value = schema.load_json(metadata[key])
        except ValueError as e:
            raise CheckpointError(path, key, f"is not valid JSON: {e}") from None
        out[key] = checked_field(value, spec, key, path)
    if "corpus_name" in metadata:
        out["corpus_name"] = metadata["corpus_name"]
    return out


def checked_field(value: Any, spec: schema.Schema, field: str, path: str) -> Any:
    """``value`` (found at ``field`` of the metadata) checked against ``spec``; CheckpointError otherwise."""
    try:
        return schema.check(value, spec, field)
    except schema.SchemaError as e:
        raise CheckpointError(path, e.field, e.message) from None


def write_checkpoint(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename): never a half-written file."""
    save_file(tensors, path, metadata={"multienc_checkpoint": FORMAT_VERSION, **metadata})


def read_checkpoint(path: str) -> Tuple[Dict[str, str], Dict[str, np.ndarray]]:
    """(metadata, tensors) of a checkpoint file, the header validated first; CheckpointError naming the
    file when it is not a multienc checkpoint of a known format version (SafetensorsError when the
    file is not valid safetensors)."""
    _, meta = read_header(path)
    if meta.get("multienc_checkpoint") != FORMAT_VERSION:
        raise CheckpointError(path, "multienc_checkpoint",
                              f"not a multienc checkpoint (format {meta.get('multienc_checkpoint')!r}, "
                              f"expected {FORMAT_VERSION!r})")
    return meta, load_file(path)
