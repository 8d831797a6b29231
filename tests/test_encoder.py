"""The C encoder against HF transformers: eval-mode forward and the gradient of
every parameter, on tiny random-weight BERT / RoBERTa / ELECTRA models saved by
transformers (tests/fixtures/models, made by tools/make_encoder_fixtures.py)."""
import json
import os
import shutil

import numpy as np
import pytest

from multienc.engine import Encoder, ModelConfigError
from multienc.formats.safetensors import SafetensorsError, load_file, save_file

from _hf_fixtures import FIXTURES, case_gradients, cases, forward_errors, load

FAMILIES = ["bert", "roberta", "electra"]


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_matches_hf_eval(family):
    errors = forward_errors(*load(family))
    assert len(errors) >= 3 and max(errors) < 1e-5, (family, errors)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_gradient_matches_hf(family):
    enc, ref = load(family)
    for c, grads in case_gradients(enc, ref):
        scale = np.median([np.linalg.norm(ref[f"case{c}/grad/{n}"]) for n in grads])
        for name, g in grads.items():
            r = ref[f"case{c}/grad/{name}"]
            assert g.shape == r.shape
            err = np.linalg.norm(g - r)
            if np.linalg.norm(r) > 1e-4 * scale:
                assert err / np.linalg.norm(r) <= 1e-4, (name, err / np.linalg.norm(r))
            else:
                # analytically zero (the key bias: softmax ignores a per-row constant);
                # both sides hold float32 rounding noise only
                assert err <= 1e-4 * scale, (name, err)


def test_padding_rows_get_no_gradient():
    """nn.Embedding(padding_idx=pad): the pad row of the word (and RoBERTa position) table."""
    for family, pad in (("bert", 0), ("roberta", 1)):
        enc, ref = load(family)
        enc.forward(ref["case0/input_ids"], ref["case0/attention_mask"])
        grads = enc.backward(ref["case0/R"])
        assert not grads["embeddings.word_embeddings.weight"][pad].any()
        if family == "roberta":
            assert not grads["embeddings.position_embeddings.weight"][pad].any()


@pytest.mark.parametrize("family", FAMILIES)
def test_finite_differences(family):
    enc, ref = load(family)
    inputs = dict(next(cases(ref))[1])
    R = ref["case0/R"]
    enc.zero_grad()
    enc.forward(**inputs)
    grads = enc.backward(R)
    state = enc.state_dict()
    rng = np.random.default_rng(0)
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.1.intermediate.dense.bias",
             "embeddings.LayerNorm.weight", "encoder.layer.1.output.LayerNorm.bias"]
    if family == "electra":
        names.append("embeddings_project.weight")
    for name in names:
        for _ in range(2):
            idx = tuple(rng.integers(0, s) for s in state[name].shape)
            eps = 1e-2
            vals = []
            for sign in (1, -1):
                st = {k: v.copy() for k, v in state.items()}
                st[name][idx] += sign * eps
                enc.load_state_dict(st)
                vals.append(float((enc.forward(**inputs).astype(np.float64) * R).sum()))
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert abs(fd - grads[name][idx]) <= 5e-3 * max(1.0, abs(fd)), (name, idx, fd, grads[name][idx])
    enc.load_state_dict(state)


def test_gradients_accumulate_until_zeroed():
    enc, ref = load("bert")
    inputs = dict(next(cases(ref))[1])
    enc.zero_grad()
    enc.forward(**inputs)
    g1 = enc.backward(ref["case0/R"])
    enc.forward(**inputs)
    g2 = enc.backward(ref["case0/R"])
    for n in g1:
        np.testing.assert_allclose(g2[n], 2 * g1[n], rtol=1e-5, atol=1e-7)
    enc.zero_grad()
    assert not any(g.any() for g in enc.gradients().values())


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_is_seeded(family):
    enc, ref = load(family)
    inputs = dict(next(cases(ref))[1])
    eval_out = enc.forward(**inputs)
    a = enc.forward(**inputs, train=True, seed=3)
    b = enc.forward(**inputs, train=True, seed=3)
    c = enc.forward(**inputs, train=True, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert np.abs(a - eval_out).max() > 1e-3
    # training-mode gradients repeat for the same seed too
    enc.zero_grad()
    enc.forward(**inputs, train=True, seed=3)
    g1 = enc.backward(ref["case0/R"])
    enc.zero_grad()
    enc.forward(**inputs, train=True, seed=3)
    g2 = enc.backward(ref["case0/R"])
    for n in g1:
        np.testing.assert_array_equal(g1[n], g2[n])


def test_train_without_dropout_equals_eval(tmp_path):
    folder = os.path.join(FIXTURES, "bert")
    enc = Encoder(folder, config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    ref = np.load(os.path.join(folder, "reference.npz"))
    h = enc.forward(ref["case1/input_ids"], ref["case1/attention_mask"], ref["case1/token_type_ids"],
                    train=True, seed=9)
    assert np.abs(h - ref["case1/last_hidden_state"]).max() <= 1e-5


def test_train_mode_backward_matches_finite_differences():
    """Backward through the dropout masks (regenerated, not stored) is exact."""
    enc, ref = load("bert")
    inputs = dict(next(cases(ref))[1])
    R = ref["case0/R"]
    enc.zero_grad()
    enc.forward(**inputs, train=True, seed=11)
    g = enc.backward(R)["encoder.layer.0.output.dense.weight"]
    state = enc.state_dict()
    idx, eps, vals = (3, 5), 1e-2, []
    for sign in (1, -1):
        st = {k: v.copy() for k, v in state.items()}
        st["encoder.layer.0.output.dense.weight"][idx] += sign * eps
        enc.load_state_dict(st)
        vals.append(float((enc.forward(**inputs, train=True, seed=11).astype(np.float64) * R).sum()))
    fd = (vals[0] - vals[1]) / (2 * eps)
    assert abs(fd - g[idx]) <= 5e-3 * max(1.0, abs(fd))


def test_state_dict_round_trip(tmp_path):
    folder = os.path.join(FIXTURES, "electra")
    enc = Encoder(folder)
    st = enc.state_dict()
    file = load_file(os.path.join(folder, "model.safetensors"))
    for name, arr in st.items():
        np.testing.assert_array_equal(arr, file[name])
    enc.save_pretrained(str(tmp_path / "out"))
    again = Encoder(str(tmp_path / "out"))
    x = np.array([[5, 6, 7, 8]])
    np.testing.assert_array_equal(again.forward(x), enc.forward(x))


def test_from_config_random_init_runs():
    cfg = json.load(open(os.path.join(FIXTURES, "bert", "config.json")))
    enc = Encoder.from_config(cfg, seed=1)
    st = enc.state_dict()
    assert np.all(st["embeddings.LayerNorm.weight"] == 1.0)
    assert 0.015 < st["encoder.layer.0.intermediate.dense.weight"].std() < 0.025
    h = enc.forward(np.array([[1, 2, 3]]))
    assert h.shape == (1, 3, 32) and np.isfinite(h).all()


# ----------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bert():
    return load("bert")[0]


def test_bad_dtype_and_shape(bert):
    with pytest.raises(TypeError, match="input_ids must be an integer array"):
        bert.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        bert.forward(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        bert.forward(np.ones((2, 3), np.int64), np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        bert.forward(np.ones((2, 3), np.int64), None, np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="both > 0"):
        bert.forward(np.ones((2, 0), np.int64))
    with pytest.raises(TypeError, match="grad must be a float array"):
        bert.forward(np.ones((1, 3), np.int64))
        bert.backward(np.ones((1, 3, 32), np.int64))
    with pytest.raises(ValueError, match="last forward's output shape"):
        bert.backward(np.ones((1, 4, 32), np.float32))


def test_bad_values(bert):
    with pytest.raises(ValueError, match=r"input_ids\[1\]\[2\] = 99 is outside the vocabulary \(size 99\)"):
        bert.forward(np.array([[1, 2, 3], [4, 5, 99]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bert.forward(np.array([[1, -2, 3]]))
    with pytest.raises(ValueError, match="token_type_ids.*outside type_vocab_size 2"):
        bert.forward(np.array([[1, 2]]), None, np.array([[0, 2]]))
    with pytest.raises(ValueError, match="attention_mask.*must be 0 or 1"):
        bert.forward(np.array([[1, 2]]), np.array([[1, 5]]))
    with pytest.raises(ValueError, match="sequence length 41 exceeds the model's maximum of 40"):
        bert.forward(np.ones((1, 41), np.int64))


def test_roberta_length_limit_counts_the_padding_offset():
    enc, _ = load("roberta")  # max_position_embeddings 42, padding_idx 1 -> 40 positions
    enc.forward(np.full((1, 40), 5))
    with pytest.raises(ValueError, match="exceeds the model's maximum of 40"):
        enc.forward(np.full((1, 41), 5))


def test_backward_before_forward():
    enc = Encoder(os.path.join(FIXTURES, "bert"))
    with pytest.raises(RuntimeError, match="needs a forward"):
        enc.backward(np.zeros((1, 1, 32), np.float32))


def copy_model(tmp_path, family="bert"):
    dst = tmp_path / family
    shutil.copytree(os.path.join(FIXTURES, family), dst)
    return dst


def test_corrupt_safetensors_files(tmp_path):
    dst = copy_model(tmp_path)
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(SafetensorsError, match="model.safetensors"):
        Encoder(str(dst))
    n = int.from_bytes(data[:8], "little")
    weights.write_bytes((n + 10 ** 9).to_bytes(8, "little") + data[8:])  # header beyond the file
    with pytest.raises(SafetensorsError, match="model.safetensors"):
        Encoder(str(dst))
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = "Q7"  # unknown dtype
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    weights.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    with pytest.raises(SafetensorsError, match="Q7"):
        Encoder(str(dst))
    header = json.loads(data[8:8 + n])
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    header[names[1]]["data_offsets"] = header[names[0]]["data_offsets"]  # overlapping offsets
    blob = json.dumps(header).encode()
    weights.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    with pytest.raises(SafetensorsError):
        Encoder(str(dst))


def test_checkpoint_disagreeing_with_config(tmp_path):
    dst = copy_model(tmp_path)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["intermediate_size"] = 38
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"intermediate.dense.(weight|bias).* has shape \(37.*config implies \(38"):
        Encoder(str(dst))


def test_missing_tensor_and_config_problems(tmp_path):
    dst = copy_model(tmp_path)
    tensors = dict(load_file(str(dst / "model.safetensors"), mmap=False))
    del tensors["encoder.layer.1.output.dense.bias"]
    save_file(tensors, str(dst / "model.safetensors"))
    with pytest.raises(ValueError, match="missing weight tensor.*encoder.layer.1.output.dense.bias"):
        Encoder(str(dst))
    (dst / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="config.json"):
        Encoder(str(dst))
    cfg = json.load(open(os.path.join(FIXTURES, "bert", "config.json")))
    (dst / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(NotImplementedError, match="supported model types: bert, electra, modernbert, roberta"):
        Encoder(str(dst))
    os.remove(dst / "config.json")
    with pytest.raises(ModelConfigError, match="no config.json"):
        Encoder(str(dst))


def test_prefixed_and_legacy_names_load(tmp_path):
    """Task-model checkpoints (bert. prefix, heads) and LayerNorm.gamma/beta names."""
    dst = copy_model(tmp_path)
    tensors = load_file(str(dst / "model.safetensors"), mmap=False)
    renamed = {}
    for k, v in tensors.items():
        k = "bert." + k
        if k.endswith("LayerNorm.weight"):
            k = k[: -len("weight")] + "gamma"
        renamed[k] = v
    renamed["cls.predictions.bias"] = np.zeros(99, np.float32)
    renamed["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    save_file(renamed, str(dst / "model.safetensors"))
    enc = Encoder(str(dst))
    ref = Encoder(os.path.join(FIXTURES, "bert"))
    x = np.array([[3, 4, 5]])
    np.testing.assert_array_equal(enc.forward(x), ref.forward(x))
