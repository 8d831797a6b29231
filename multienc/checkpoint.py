"""Model checkpoints: one safetensors file with everything needed to rebuild a model.

The seed's file name ``best-model.pt`` is kept, but the content is safetensors
(no pickle, nothing executed on load). Tensors: ``lm.<i>.<hf name>`` for each
LM's encoder weights, ``combiner.*``, ``decoder.*`` and ``crf.*`` for the head. Metadata
(string -> string; JSON values):

- ``multienc_checkpoint``: format version (``"1"``)
- ``head``: head class, num_classes, MultiEncoder settings, head ``options`` (the tagger's
  ``use_crf`` and ``subtoken_pooling``)
- ``language_models``: per LM its hub id / name, pooling, fine_tune,
  keep_special_tokens, max_length, ``config`` (config.json, dropout override
  included) and ``tokenizer_files`` (the tokenizer files' text)
- ``label_map`` and ``corpus_name`` when the trainer set them

Loading writes each LM's config and tokenizer files into a content-addressed
folder under ``$MULTIENC_CACHE/checkpoints`` (atomically) and rebuilds the
model from there and the tensors: no network, no original files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from multienc.safetensors import load_file, read_header, save_file

FORMAT_VERSION = "1"


def cache_dir() -> str:
    """``$MULTIENC_CACHE/checkpoints`` (``~/.cache/multienc/checkpoints`` by default)."""
    root = os.environ.get("MULTIENC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "multienc")
    return os.path.join(root, "checkpoints")


def checkpoint_metadata(model) -> Dict[str, str]:
    """The metadata block of ``model``'s checkpoint."""
    lms = []
    for lm in model.language_models:
        files = {}
        for name in lm.tokenizer_file_names():
            with open(os.path.join(lm.tokenizer_dir, name), encoding="utf-8") as f:
                files[name] = f.read()
        lms.append(dict(model_id=lm.model_id, name=lm.name, pooling=lm.pooling, fine_tune=lm.fine_tune,
                        keep_special_tokens=lm.keep_special_tokens, max_length=lm.max_length,
                        config=lm.config, tokenizer_files=files))
    meta = {"multienc_checkpoint": FORMAT_VERSION, "head": json.dumps(model.head_settings()),
            "language_models": json.dumps(lms)}
    if getattr(model, "label_map", None):
        meta["label_map"] = json.dumps(model.label_map)
    if getattr(model, "corpus_name", None):
        meta["corpus_name"] = model.corpus_name
    return meta


def save_checkpoint(model, path: str) -> None:
    """Write ``model`` to ``path`` atomically (temp file, fsync, rename)."""
    save_file(model.state_dict(), path, metadata=checkpoint_metadata(model))


def _materialise(spec: Mapping[str, Any]) -> str:
    """A folder with the LM's config.json and tokenizer files (content-addressed, written once)."""
    blob = json.dumps({"config": spec["config"], "files": spec["tokenizer_files"]}, sort_keys=True).encode()
    folder = os.path.join(cache_dir(), hashlib.sha256(blob).hexdigest()[:32])
    if os.path.isfile(os.path.join(folder, ".complete")):
        return folder
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache_dir(), prefix=".incomplete-")
    try:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec["config"], f, indent=2)
        for name, text in spec["tokenizer_files"].items():
            if os.path.basename(name) != name or name.startswith("."):
                raise ValueError(f"checkpoint names a tokenizer file {name!r} outside its folder")
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished it first
            if not os.path.isfile(os.path.join(folder, ".complete")):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def rebuild(metadata: Mapping[str, str], tensors: Mapping[str, np.ndarray], source: str = "checkpoint"):
    """A model from checkpoint metadata and tensors (what :func:`load_checkpoint` reads)."""
    from multienc.encoders import LanguageModel
    from multienc.multi_encoder import MultiEncoder
    from multienc.task_heads import SequenceTagger, TextClassifier, TextRegressor
    if metadata.get("multienc_checkpoint") != FORMAT_VERSION:
        raise ValueError(f"{source}: not a multienc checkpoint (format {metadata.get('multienc_checkpoint')!r})")
    try:
        head = json.loads(metadata["head"])
        specs = json.loads(metadata["language_models"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{source}: broken checkpoint metadata: {e}") from None
    lms = []
    for i, spec in enumerate(specs):
        prefix = f"lm.{i}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        lms.append(LanguageModel._restore(spec, _materialise(spec), state, source=source))
    heads = {"TextClassifier": TextClassifier, "TextRegressor": TextRegressor, "SequenceTagger": SequenceTagger}
    if head.get("head") not in heads:
        raise ValueError(f"{source}: unknown head {head.get('head')!r}")
    encoder = MultiEncoder(lms, **head["multi_encoder"]) if "multi_encoder" in head else lms[0]
    model = heads[head["head"]](encoder, head["num_classes"], **head.get("options", {}))
    model.load_state_dict(dict(tensors), source=source)
    model.label_map = json.loads(metadata["label_map"]) if "label_map" in metadata else None
    model.corpus_name = metadata.get("corpus_name")
    model.steps_trained = 1  # trained weights: the trainer must not re-draw the head
    return model


def read_checkpoint(path: str) -> Tuple[Dict[str, str], Dict[str, np.ndarray]]:
    """(metadata, tensors) of a checkpoint file, the header validated first."""
    _, meta = read_header(path)
    return meta, load_file(path)


def load_checkpoint(path: str):
    """Rebuild the model saved at ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    meta, tensors = read_checkpoint(path)
    return rebuild(meta, tensors, source=path)
