"""ModernBERT in the C engine against transformers 5.24.0's ModernBertModel (eager attention, the
padded path): eval-mode forward and the gradient of every parameter on tiny random-weight models
(tests/fixtures/models/modernbert*, made by tools/make_modernbert_fixtures.py), transformers' own
rotary tables, the two config spellings, dropout in training mode, errors."""
import json
import os

import numpy as np
import pytest

from multienc.engine import Encoder, ModelConfigError, _C, _C_tests, engine_config
from multienc.engine.encoder import FAMILIES

from _hf_fixtures import FIXTURES, case_gradients, cases, forward_errors, load

MODELS = ["modernbert", "modernbert-biases", "modernbert-global"]


def config(name):
    with open(os.path.join(FIXTURES, name, "config.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_hf_eval(name):
    errors = forward_errors(*load(name))
    assert len(errors) == 3 and max(errors) <= 1e-5, (name, errors)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gradient_matches_hf(name):
    enc, ref = load(name)
    for c, grads in case_gradients(enc, ref):
        for pname, g in grads.items():
            r = ref[f"case{c}/grad/{pname}"]
            assert g.shape == r.shape
            if pname == "embeddings.tok_embeddings.weight":
                assert not g[0].any() and not r[0].any(), "the padding row gets no gradient"
            err = np.linalg.norm(g - r) / np.linalg.norm(r)
            assert err <= 1e-4, (name, c, pname, err)


def test_parameter_names_and_layout():
    """HF's names in HF's order; no bias tensors without the biases; layer 0 has no attention norm."""
    enc, _ = load("modernbert")
    names = enc.param_names()
    assert names[:2] == ["embeddings.tok_embeddings.weight", "embeddings.norm.weight"]
    assert names[-1] == "final_norm.weight"
    assert "layers.0.attn_norm.weight" not in names and "layers.1.attn_norm.weight" in names
    assert not [n for n in names if n.endswith(".bias")]
    biased = Encoder(os.path.join(FIXTURES, "modernbert-biases")).param_names()
    assert {"embeddings.norm.bias", "layers.1.attn_norm.bias", "layers.0.attn.Wqkv.bias", "layers.0.mlp.Wi.bias",
            "final_norm.bias"} <= set(biased)


@pytest.mark.parametrize("key", ["base", "hs8", "hs16", "hs12"])
def test_rotary_tables_match_transformers(key):
    """The engine's cos/sin against ModernBertRotaryEmbedding's, up to position 8191 for ModernBERT-base's
    head size: the float32 angles are the same, so the tables agree to float32 rounding of cos/sin."""
    ref = np.load(os.path.join(FIXTURES, "modernbert_rope.npz"))
    pos, hs = ref[f"{key}/positions"], int(ref[f"{key}/head_size"])
    thetas = sorted({k.split("/")[1] for k in ref.files if k.startswith(f"{key}/") and k.endswith("/cos")})
    assert len(thetas) == 2
    for theta in thetas:
        cos, sin = _C_tests.ops_rope_tables(int(pos.max()) + 1, hs, float(theta))
        np.testing.assert_allclose(cos[pos], ref[f"{key}/{theta}/cos"], rtol=0, atol=2.5e-7)
        np.testing.assert_allclose(sin[pos], ref[f"{key}/{theta}/sin"], rtol=0, atol=2.5e-7)


def test_hub_spelling_reads_as_transformers_5_spelling():
    """The hub's config.json (global_attn_every_n_layers, global_rope_theta, local_rope_theta) and
    transformers 5's (layer_types, rope_parameters) describe the same model."""
    t5 = config("modernbert-biases")
    hub = {k: v for k, v in t5.items() if k not in ("layer_types", "rope_parameters")}
    hub.update(global_attn_every_n_layers=2, global_rope_theta=5000.0, local_rope_theta=300.0)
    assert engine_config(hub) == engine_config(t5)
    cfg = engine_config(t5)
    assert (cfg["global_attn_every_n_layers"], cfg["global_rope_theta"], cfg["local_rope_theta"]) == (2, 5000.0, 300.0)
    # layer_types wins over a disagreeing global_attn_every_n_layers, as in ModernBertConfig
    t5["global_attn_every_n_layers"] = 3
    assert engine_config(t5)["global_attn_every_n_layers"] == 2
    # defaults: ModernBertConfig's
    bare = {k: t5[k] for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size")}
    cfg = engine_config(bare)
    assert (cfg["global_attn_every_n_layers"], cfg["local_attention"], cfg["global_rope_theta"],
            cfg["local_rope_theta"], cfg["pad_token_id"], cfg["layer_norm_eps"]) == (3, 128, 160000.0, 10000.0,
                                                                                     50283, 1e-5)


def test_unsupported_configs_fail_clearly():
    base = config("modernbert")
    with pytest.raises(NotImplementedError, match="not a pattern of one global layer every n"):
        engine_config({**base, "layer_types": ["sliding_attention", "full_attention"] * 2})
    with pytest.raises(ModelConfigError, match="layer_types must name"):
        engine_config({**base, "layer_types": ["full_attention"]})
    with pytest.raises(NotImplementedError, match="rope_type 'linear'"):
        engine_config({**base, "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 2.0}}})
    with pytest.raises(NotImplementedError, match="rope_scaling"):
        engine_config({**base, "rope_scaling": {"rope_type": "linear", "factor": 2.0}})
    with pytest.raises(NotImplementedError, match="hidden_activation 'silu'"):
        engine_config({**base, "hidden_activation": "silu"})
    with pytest.raises(ModelConfigError, match="'intermediate_size'"):
        engine_config({k: v for k, v in base.items() if k != "intermediate_size"})
    with pytest.raises(ValueError, match="even head size"):
        Encoder.from_config({**base, "hidden_size": 12, "num_attention_heads": 4})


def test_token_types_are_ignored():
    """ModernBERT has no token type embeddings: types (a pair's second segment) change nothing."""
    enc, ref = load("modernbert")
    inputs = dict(next(cases(ref))[1])
    types = np.ones_like(inputs["input_ids"]) * 7
    np.testing.assert_array_equal(enc.forward(**inputs, token_type_ids=types), enc.forward(**inputs))


def test_length_limit_and_bad_ids():
    enc, _ = load("modernbert")
    with pytest.raises(ValueError, match="exceeds the model's maximum of 64 positions"):
        enc.forward(np.ones((1, 65), np.int64))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        enc.forward(np.array([[1, 99]]))
    assert enc.max_positions == 64


def test_dropout_is_seeded_and_train_mode_backward_is_exact():
    """Embedding, attention (probabilities and output) and MLP dropout from the counter RNG: a
    seed repeats, another differs; backward through the regenerated masks matches central
    differences of the same training-mode forward. The batch is unpadded: a padded query with no
    real key in its window is uniform whatever its scores, and HF's gradient there (which the engine
    follows, checked above) is autograd's formula, not the derivative central differences measure."""
    enc, ref = load("modernbert")
    inputs = dict(list(cases(ref))[1][1])
    a = enc.forward(**inputs, train=True, seed=3)
    np.testing.assert_array_equal(a, enc.forward(**inputs, train=True, seed=3))
    assert np.abs(a - enc.forward(**inputs, train=True, seed=4)).max() > 1e-3
    assert np.abs(a - enc.forward(**inputs)).max() > 1e-3
    R = ref["case1/R"]
    enc.zero_grad()
    enc.forward(**inputs, train=True, seed=11)
    grads = enc.backward(R)
    state = enc.state_dict()
    rng = np.random.default_rng(0)
    for pname in ("layers.1.attn.Wqkv.weight", "layers.2.mlp.Wi.weight", "layers.0.mlp.Wo.weight",
                  "embeddings.norm.weight", "layers.3.attn_norm.weight"):
        idx = tuple(rng.integers(0, s) for s in state[pname].shape)
        vals = []
        for sign in (1, -1):
            st = {k: v.copy() for k, v in state.items()}
            st[pname][idx] += sign * 1e-2
            enc.load_state_dict(st)
            vals.append(float((enc.forward(**inputs, train=True, seed=11).astype(np.float64) * R).sum()))
        fd = (vals[0] - vals[1]) / 2e-2
        assert abs(fd - grads[pname][idx]) <= 5e-3 * max(1.0, abs(fd)), (pname, fd, grads[pname][idx])
    enc.load_state_dict(state)


def test_train_without_dropout_equals_eval():
    folder = os.path.join(FIXTURES, "modernbert")
    enc = Encoder(folder, config_overrides={"attention_dropout": 0.0, "embedding_dropout": 0.0, "mlp_dropout": 0.0})
    ref = np.load(os.path.join(folder, "reference.npz"))
    h = enc.forward(ref["case0/input_ids"], ref["case0/attention_mask"], train=True, seed=9)
    assert np.abs(h - ref["case0/last_hidden_state"]).max() <= 1e-5


def test_save_and_reload_and_random_init(tmp_path):
    enc, ref = load("modernbert-biases")
    enc.save_pretrained(str(tmp_path / "out"))
    again = Encoder(str(tmp_path / "out"))
    x = ref["case2/input_ids"]
    np.testing.assert_array_equal(again.forward(x), enc.forward(x))
    fresh = Encoder.from_config(config("modernbert-biases"), seed=1)
    st = fresh.state_dict()
    for pname in ("embeddings.norm.weight", "layers.1.attn_norm.weight", "layers.0.mlp_norm.weight",
                  "final_norm.weight"):
        assert np.all(st[pname] == 1.0), pname
    assert not st["final_norm.bias"].any()
    assert 0.015 < st["layers.0.mlp.Wi.weight"].std() < 0.025
    assert np.isfinite(fresh.forward(x)).all()


def test_a_task_model_needs_the_modernbert_ops():
    """The automatic device choice asks whether the whole task model runs on a backend; the CUDA
    backend has no rotary, gated-unit or windowed-attention ops, so the answer for ModernBERT is no."""
    code = FAMILIES["modernbert"]
    assert _C.model_runs_on("cpu", 0, code) and _C.model_runs_on("cpu", 2, code)
    assert not _C.model_runs_on("cuda", 0, code)
