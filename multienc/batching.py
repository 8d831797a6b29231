"""Turning sentences into the C model's inputs, and building the C model.

For every LM of a model: tokenize the batch (texts or (a, b) pairs, padded to
the longest, truncated to the LM's maximum) and build the pooling weights that
select each sentence's vector from the LM's hidden states. Shared by the
combiner, the task heads and the trainer.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from multienc import _C

#: combine method name -> the C model's code
COMBINE_METHODS = {"none": 0, "concat": 1, "mean": 2, "dme": 3}

Inputs = List[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray]]


def sentence_pool_weights(attention_mask: np.ndarray, pooling: str, cls_position: int) -> np.ndarray:
    """Pooling as weights over positions, float32 (B, 1, T).

    ``'cls'``: 1 at the classifier token (position 0, or the last real token when the
    tokenizer puts it last). ``'mean'``: 1/n over the n real tokens (padding excluded).
    """
    mask = np.asarray(attention_mask)
    B, T = mask.shape
    w = np.zeros((B, 1, T), np.float32)
    if pooling == "cls":
        pos = np.zeros(B, np.int64) if cls_position == 0 else np.maximum(mask.sum(1), 1) - 1
        w[np.arange(B), 0, pos] = 1.0
    elif pooling == "mean":
        counts = np.maximum(mask.sum(1, keepdims=True), 1)
        w[:, 0, :] = mask / counts
    else:
        raise ValueError(f"sentence pooling must be 'cls' or 'mean', got {pooling!r}")
    return w


def lm_inputs(lm, sentences: Sequence) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray]:
    """(input_ids, attention_mask, token_type_ids or None, pool weights) of one LM for a batch."""
    enc = lm.tokenize(sentences)
    mask = enc["attention_mask"]
    types = enc["token_type_ids"] if int(lm.config.get("type_vocab_size", 2)) > 1 else None
    return (enc["input_ids"].astype(np.int32), mask.astype(np.int32),
            None if types is None else types.astype(np.int32),
            sentence_pool_weights(mask, lm.pooling, lm.cls_position))


def build_inputs(language_models: Sequence, sentences: Sequence) -> Inputs:
    """The C model's inputs for a batch: one tuple per LM."""
    return [lm_inputs(lm, sentences) for lm in language_models]


def linear_init(rng: np.random.Generator, out_features: int, in_features: int) -> Tuple[np.ndarray, np.ndarray]:
    """torch.nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias."""
    bound = 1.0 / np.sqrt(in_features)
    w = rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    b = rng.uniform(-bound, bound, out_features).astype(np.float32)
    return w, b


def xavier_uniform(rng: np.random.Generator, out_features: int, in_features: int) -> np.ndarray:
    """torch.nn.init.xavier_uniform_ (gain 1)."""
    a = np.sqrt(6.0 / (in_features + out_features))
    return rng.uniform(-a, a, (out_features, in_features)).astype(np.float32)


def new_c_model(language_models: Sequence, combiner_config: Mapping, task: int, num_classes: int,
                state: Optional[Mapping[str, np.ndarray]] = None):
    """A ``_C.Model`` over the LMs' encoders with the given head weights (missing ones stay 0)."""
    cfg = dict(combiner_config, task=task, num_classes=num_classes)
    model = _C.Model([lm.encoder._c for lm in language_models], cfg)
    if state:
        write_state(model, state)
    return model


def read_state(model) -> Dict[str, np.ndarray]:
    """Copies of a C model's head weights by name."""
    flat = np.empty(model.num_floats, np.float32)
    model.read_params(flat)
    return {name: flat[off:off + int(np.prod(shape))].reshape(shape).copy()
            for name, shape, off in model.param_info()}


def write_state(model, state: Mapping[str, np.ndarray], source: str = "state") -> None:
    """Set a C model's head weights from a name -> array mapping (missing names keep their value)."""
    flat = np.empty(model.num_floats, np.float32)
    model.read_params(flat)
    for name, shape, off in model.param_info():
        if name in state:
            arr = np.asarray(state[name], np.float32)
            if arr.shape != tuple(shape):
                raise ValueError(f"{source}: {name} has shape {arr.shape}, expected {tuple(shape)}")
            flat[off:off + arr.size] = arr.reshape(-1)
    model.write_params(flat)
