"""One entry point for a model folder's weights: :func:`load_state_dict`.

The folder is searched in the order transformers uses: ``model.safetensors``,
``model.safetensors.index.json`` (sharded), ``pytorch_model.bin``,
``pytorch_model.bin.index.json`` (sharded). Tensor names are returned exactly
as stored; mapping them onto the engine's parameters is the engine's job.
"""
from __future__ import annotations

import functools
import os
import posixpath
from typing import Callable, Dict, List, Tuple, Union

import numpy as np

from multienc.formats import safetensors, torch_pickle
from multienc.formats.schema import load_json

__all__ = ["WEIGHT_FILES", "WeightsError", "check_relative_path", "find_weight_file", "read_index",
           "load_state_dict"]

# (file name, is an index of shards) in order of preference.
WEIGHT_FILES: Tuple[Tuple[str, bool], ...] = (
    ("model.safetensors", False),
    ("model.safetensors.index.json", True),
    ("pytorch_model.bin", False),
    ("pytorch_model.bin.index.json", True),
)


class WeightsError(ValueError):
    """A weight folder, index or shard is missing or inconsistent; names the file (and tensor)."""


def check_relative_path(name: str, source: str) -> str:
    """Return ``name`` if it is a plain relative path inside its folder, else raise WeightsError.

    Guards every file name that comes from a (possibly downloaded) index or
    request against absolute paths and ``..`` escapes.
    """
    parts = name.split("/")
    if (not name or "\\" in name or "\0" in name or posixpath.isabs(name)
            or any(p in ("", ".", "..") for p in parts)):
        raise WeightsError(f"{source}: unsafe file name {name!r}")
    return name


def read_index(path: str) -> Dict[str, str]:
    """Parse a sharded-checkpoint index and return its ``weight_map`` (tensor -> shard file)."""
    try:
        with open(path, encoding="utf-8") as f:
            index = load_json(f.read())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read the shard index: {e}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{path}: no 'weight_map' object mapping tensor names to shard files")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise WeightsError(f"{path}: weight_map entry for tensor {tensor!r} is not a file name")
        check_relative_path(shard, path)
    return weight_map


def find_weight_file(folder: str) -> Tuple[str, bool]:
    """The preferred weight file present in ``folder`` as (path, is_index); FileNotFoundError if none."""
    for name, is_index in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path, is_index
    raise FileNotFoundError(f"{folder}: no weight file (looked for {', '.join(n for n, _ in WEIGHT_FILES)})")


#: a loaded tensor: an array, or with ``widen=False`` bfloat16's stored bits
Tensor = Union[np.ndarray, safetensors.BFloat16Bits]


def _reader(path: str, widen: bool) -> Callable[[str], Dict[str, Tensor]]:
    read = safetensors.load_file if path.endswith(".safetensors") else torch_pickle.load_file
    return functools.partial(read, widen_bf16=widen)


def _load_sharded(index_path: str, widen: bool) -> Dict[str, Tensor]:
    weight_map = read_index(index_path)
    folder = os.path.dirname(index_path)
    shards: Dict[str, List[str]] = {}
    for tensor, shard in weight_map.items():
        shards.setdefault(shard, []).append(tensor)
    out: Dict[str, Tensor] = {}
    for shard, tensors in shards.items():
        path = os.path.join(folder, shard)
        if not os.path.isfile(path):
            raise WeightsError(f"{index_path}: shard {shard!r} (holding tensor {tensors[0]!r}) is missing")
        state = _reader(path, widen)(path)
        for tensor in tensors:
            if tensor not in state:
                raise WeightsError(f"{path}: tensor {tensor!r} listed in {os.path.basename(index_path)} is missing")
        for tensor, value in state.items():
            if tensor in out:
                raise WeightsError(f"{path}: tensor {tensor!r} also appears in another shard")
            out[tensor] = value
    return out


def _widen(value: np.ndarray) -> np.ndarray:
    if value.dtype == np.float16:
        widened = value.astype(np.float32)
        widened.flags.writeable = False
        return widened
    return value


def load_state_dict(folder: "os.PathLike[str] | str", widen: bool = True) -> Dict[str, Tensor]:
    """Load a model folder's weights as ``{tensor name: numpy.ndarray}``.

    Picks the first of :data:`WEIGHT_FILES` present.
    float16 and bfloat16 tensors become float32; every other dtype (float32,
    int64 such as ``position_ids``, ...) is kept. ``widen=False`` keeps the
    half-precision tensors as stored, for a caller that converts them one at a
    time (an encoder copying them into its parameters): float16 as float16
    arrays, bfloat16, which numpy cannot hold, as
    :class:`~multienc.formats.safetensors.BFloat16Bits` (its ``widen()`` gives
    float32; numpy refuses to convert it). Arrays are read-only
    (those kept as stored are views of a memory map of the file where it allows:
    aligned and contiguous). Errors: FileNotFoundError without a
    weight file; :class:`WeightsError` for a bad index or missing shard/tensor;
    :class:`~multienc.safetensors.SafetensorsError` /
    :class:`~multienc.torch_pickle.TorchPickleError` for a bad file, each
    naming the file and tensor.
    """
    path, is_index = find_weight_file(os.fspath(folder))
    state = _load_sharded(path, widen) if is_index else _reader(path, widen)(path)
    return {name: _widen(value) for name, value in state.items()} if widen else state
