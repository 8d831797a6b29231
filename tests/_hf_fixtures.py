"""The tiny encoders saved by transformers and their reference outputs (tests/fixtures/models,
made by tools/make_encoder_fixtures.py and tools/make_modernbert_fixtures.py)."""
import os
from typing import Dict, Iterator, List, Set, Tuple

import numpy as np

from multienc.engine import Encoder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")


def load(name: str) -> Tuple[Encoder, "np.lib.npyio.NpzFile"]:
    """The engine's encoder of fixture ``name`` and its reference.npz."""
    folder = os.path.join(FIXTURES, name)
    return Encoder(folder), np.load(os.path.join(folder, "reference.npz"))


def cases(ref) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """(case number, the forward's keyword inputs) of every case in a reference.npz."""
    c = 0
    while f"case{c}/input_ids" in ref:
        yield c, {k: ref[f"case{c}/{k}"] for k in ("input_ids", "attention_mask", "token_type_ids")
                  if f"case{c}/{k}" in ref}
        c += 1


def grad_names(ref, c: int) -> Set[str]:
    """The HF parameter names case ``c`` holds a gradient of."""
    return {k[len(f"case{c}/grad/"):] for k in ref.files if k.startswith(f"case{c}/grad/")}


def forward_errors(enc: Encoder, ref) -> List[float]:
    """Per case: the largest absolute difference of the eval-mode forward (float32) from HF's."""
    out = []
    for c, inputs in cases(ref):
        h = enc.forward(**inputs)
        assert h.dtype == np.float32
        out.append(float(np.abs(h - ref[f"case{c}/last_hidden_state"]).max()))
    return out


def case_gradients(enc: Encoder, ref) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """Per case: every parameter's gradient of sum(last_hidden_state * R), the names checked
    against the reference's (every HF parameter and nothing else)."""
    for c, inputs in cases(ref):
        enc.zero_grad()
        enc.forward(**inputs)
        grads = enc.backward(ref[f"case{c}/R"])
        assert set(grads) == grad_names(ref, c), "every HF parameter has a gradient and nothing else"
        yield c, grads
