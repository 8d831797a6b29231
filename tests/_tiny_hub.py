"""The tiny hub fixtures (tests/fixtures/tiny_hub, made by tools/make_tiny_hub.py) and their HF
reference outputs (tests/fixtures/tiny_hub_reference.npz): paths, inputs, and the comparison of a
LanguageModel's tokens and hidden states with HF's."""
import json
import os

import numpy as np
import transformers

from multienc.encoders import LanguageModel
from multienc.engine import hidden_dropout_key
from multienc.formats.safetensors import load_file
from multienc.formats.weights import load_state_dict

from _hub_server import TINY_HUB

HERE = os.path.dirname(os.path.abspath(__file__))
REF = np.load(os.path.join(HERE, "fixtures", "tiny_hub_reference.npz"))
TEXTS = [str(t) for t in REF["texts"]]
PAIRS = [(str(a), str(b)) for a, b in REF["pairs"]]


def local(repo_id):
    """The fixture folder of a hub repository (its ``main`` revision)."""
    return os.path.join(TINY_HUB, repo_id.replace("/", "--"), "main")


def check_against_hf(lm, repo_id):
    """Token ids (truncated to max_length, padded) and real-token hidden states equal HF's; token
    types are compared where HF returned them and reach the encoder only if it reads them."""
    for kind, items in (("texts", TEXTS), ("pairs", PAIRS)):
        batch = lm.tokenize(items)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if f"{repo_id}/{kind}/{key}" in REF:
                np.testing.assert_array_equal(batch[key], REF[f"{repo_id}/{kind}/{key}"], err_msg=key)
        types = batch["token_type_ids"] if lm.encoder.uses_token_types else None
        h = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], types)
        real = batch["attention_mask"].astype(bool)
        np.testing.assert_allclose(h[real], REF[f"{repo_id}/{kind}/last_hidden_state"][real], atol=1e-5, rtol=0)


def assert_reloads_from_cache(lm, repo_id, server, env):
    """With HF_HUB_OFFLINE=1 the repository loads again from the HF cache alone (no request to the
    hub) and embeds as before."""
    env.setenv("HF_HUB_OFFLINE", "1")
    seen = len(server.requests)
    again = LanguageModel(repo_id)
    assert len(server.requests) == seen
    np.testing.assert_array_equal(again.embed(["Café prices rose."]), lm.embed(["Café prices rose."]))


BASE_PREFIXES = ("electra.", "roberta.", "bert.", "ernie.", "distilbert.", "albert.", "deberta.", "mpnet.")
ENCODER_PARTS = ("embeddings.", "encoder.", "embeddings_project.", "transformer.")


def check_save_pretrained(folder, repo_id, out):
    """save_pretrained of a tuned-dropout LM: the config records the dropout under the family's key,
    the weights are the base model's under the names AutoModel loads, the folder reloads to the
    same embeddings, and transformers (no torch needed) reads the config and the tokenizer files,
    which give HF's reference ids."""
    lm = LanguageModel(folder, hidden_dropout_prob=0.3, pooling="mean")
    lm.save_pretrained(str(out))
    key = hidden_dropout_key(lm.config["model_type"])
    assert json.loads((out / "config.json").read_text())[key] == 0.3
    base = {k.split(".", 1)[1] if k.startswith(BASE_PREFIXES) else k for k in load_state_dict(folder)}
    base = {k for k in base if k.startswith(ENCODER_PARTS) and k != "embeddings.position_ids"}
    assert set(load_file(str(out / "model.safetensors"))) == base
    again = LanguageModel(str(out), pooling="mean", hidden_dropout_prob=0.3)  # the argument always overrides
    assert again.config == lm.config
    np.testing.assert_array_equal(again.embed(TEXTS + PAIRS), lm.embed(TEXTS + PAIRS))
    assert getattr(transformers.AutoConfig.from_pretrained(str(out)), key) == 0.3
    hf = transformers.AutoTokenizer.from_pretrained(str(out))(TEXTS, padding=True, truncation=True)
    np.testing.assert_array_equal(np.array(hf["input_ids"]), REF[f"{repo_id}/texts/input_ids"])
