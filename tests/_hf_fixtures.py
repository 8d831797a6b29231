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


def case_inputs(ref, prefix: str) -> Dict[str, np.ndarray]:
    """The forward's keyword inputs of the case stored under ``prefix`` ("case0", "train")."""
    return {k: ref[f"{prefix}/{k}"] for k in ("input_ids", "attention_mask", "token_type_ids")
            if f"{prefix}/{k}" in ref}


def cases(ref) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """(case number, the forward's keyword inputs) of every case in a reference.npz."""
    c = 0
    while f"case{c}/input_ids" in ref:
        yield c, case_inputs(ref, f"case{c}")
        c += 1


def grad_names(ref, prefix: str) -> Set[str]:
    """The HF parameter names the case under ``prefix`` holds a gradient of."""
    return {k[len(f"{prefix}/grad/"):] for k in ref.files if k.startswith(f"{prefix}/grad/")}


def assert_gradients_match(grads: Dict[str, np.ndarray], ref, prefix: str) -> None:
    """Every HF parameter has a gradient and nothing else; each within relative error 1e-4 of HF's,
    compared in absolute terms (against the median gradient norm) where HF's is analytically zero."""
    assert set(grads) == grad_names(ref, prefix), "every HF parameter has a gradient and nothing else"
    scale = np.median([np.linalg.norm(ref[f"{prefix}/grad/{n}"]) for n in grads])
    for name, g in grads.items():
        r = ref[f"{prefix}/grad/{name}"]
        assert g.shape == r.shape
        err = np.linalg.norm(g - r)
        if np.linalg.norm(r) > 1e-4 * scale:
            assert err / np.linalg.norm(r) <= 1e-4, (name, err / np.linalg.norm(r))
        else:
            # analytically zero (the key bias: softmax ignores a per-row constant; a frozen
            # table); both sides hold float32 rounding noise only
            assert err <= 1e-4 * scale, (name, err)


def forward_errors(enc: Encoder, ref, inference: bool = False) -> List[float]:
    """Per case: the largest absolute difference of the eval-mode forward (float32) from HF's
    (with ``inference``: the forward that keeps no activations for a backward)."""
    out = []
    for c, inputs in cases(ref):
        h = enc.forward(**inputs, inference=inference)
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
        assert set(grads) == grad_names(ref, f"case{c}"), "every HF parameter has a gradient and nothing else"
        yield c, grads
