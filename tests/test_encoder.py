"""The C encoder against HF transformers: eval-mode forward and the gradient of
every parameter, on tiny random-weight BERT / RoBERTa / ELECTRA / XLM-RoBERTa / DistilBERT
(learned and sinusoidal positions) / ALBERT (shared layer groups) / MPNet (relative attention bias,
sequences of 140 tokens) models saved by transformers (tests/fixtures/models, made by
tools/make_encoder_fixtures.py); for the newer families also
train mode, with HF run under the masks the engine draws."""
import json
import os
import shutil

import numpy as np
import pytest

from multienc.engine import Encoder, ModelConfigError, TaskModel, _C, engine_config
from multienc.engine.encoder import normalize_name, sinusoidal_table
from multienc.formats.safetensors import BFloat16Bits, SafetensorsError, load_file, save_file
from multienc.formats.weights import load_state_dict

from _hf_fixtures import FIXTURES, assert_gradients_match, case_inputs, cases, forward_errors, load
from test_torch_pickle import S, state_dict, tensor, write_bin

# DeBERTa-v3 as released, separate position projections with embedding_size != hidden_size and token
# types, c2p only, p2c only without norm_rel_ebd, v2-style raw distances, v2's ConvLayer
# (tools/make_encoder_fixtures.py)
DEBERTA = ["deberta-v3", "deberta-v3-separate", "deberta-v3-c2p", "deberta-v3-p2c", "deberta-v2-nobuckets",
           "deberta-v2-conv"]
# DeBERTa (v1) as microsoft/deberta-base, with c2p only, absolute positions, token types and clamped
# distances, and without relative attention (v2's engine under v1's names: in_proj, q_bias / v_bias, pos_proj / pos_q_proj, no key biases)
DEBERTA_V1 = ["deberta", "deberta-c2p", "deberta-abs"]
# ernie: ERNIE 2.0's config (model_type ernie, use_task_id: every token adds row 0 of the task type table)
FAMILIES = ["bert", "roberta", "electra", "xlm-roberta", "distilbert", "distilbert-sinusoidal", "albert",
            "albert-uneven", "mpnet", *DEBERTA, "ernie", *DEBERTA_V1]
# fixtures whose reference holds a train-mode case (HF under the engine's dropout masks)
TRAIN_CASES = ["xlm-roberta", "distilbert", "distilbert-sinusoidal", "albert", "albert-uneven", "mpnet",
               "deberta-v3", "deberta-v3-separate", "deberta-v2-conv", "ernie", *DEBERTA_V1]


@pytest.mark.parametrize("inference", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_matches_hf_eval(family, inference):
    errors = forward_errors(*load(family), inference=inference)
    assert len(errors) >= 3 and max(errors) < 1e-5, (family, errors)


@pytest.mark.parametrize("family", ["bert", "roberta", "albert-uneven", "mpnet", "deberta-v3", "deberta-v2-conv",
                                    "modernbert", "modernbert-biases"])
def test_inference_forward_is_eval_in_two_layers_memory(family):
    """Eight layers (the fixtures have 2 to 4): the inference forward, whose layer l writes over
    layer l - 2's activations, gives the eval forward's bits (checked against HF above) in well
    under half its memory; a backward after it is refused until a forward that keeps activations."""
    with open(os.path.join(FIXTURES, family, "config.json"), encoding="utf-8") as f:
        cfg = dict(json.load(f), num_hidden_layers=8)
    if "layer_types" in cfg:  # ModernBERT: one per layer, a global one every third as in the fixture
        cfg["layer_types"] = ["sliding_attention" if k % 3 else "full_attention" for k in range(8)]
    kept, rolled = Encoder.from_config(cfg, seed=3), Encoder.from_config(cfg, seed=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 90, (3, 24))
    mask = np.ones_like(ids)
    mask[1, 17:] = 0
    h = kept.forward(ids, mask)
    np.testing.assert_array_equal(rolled.forward(ids, mask, inference=True), h)
    assert rolled.workspace_bytes < 0.4 * kept.workspace_bytes, (rolled.workspace_bytes, kept.workspace_bytes)
    grad = rng.standard_normal(h.shape).astype(np.float32)
    with pytest.raises(RuntimeError, match="after an inference forward, which keeps no activations"):
        rolled.backward(grad)
    rolled.forward(ids, mask)
    expected = kept.backward(grad)
    for name, g in rolled.backward(grad).items():
        np.testing.assert_array_equal(g, expected[name], err_msg=name)
    with pytest.raises(ValueError, match="either train=True or inference=True"):
        rolled.forward(ids, mask, train=True, inference=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_gradient_matches_hf(family):
    enc, ref = load(family)
    n = 0
    for c, inputs in cases(ref):
        enc.zero_grad()
        enc.forward(**inputs)
        assert_gradients_match(enc.backward(ref[f"case{c}/R"]), ref, f"case{c}")
        n += 1
    assert n >= 3


@pytest.mark.parametrize("family,case", [(f, "train") for f in TRAIN_CASES] +
                         [(f, "train_short") for f in TRAIN_CASES if f.startswith("deberta") and f != "deberta-abs"])
def test_train_mode_matches_hf_under_the_same_masks(family, case):
    """HF in train mode with every dropout mask replaced by the engine's (same seed, same sites):
    the engine drops out exactly where HF does, e.g. not after ALBERT's FFN or DistilBERT's
    attention output (an extra or missing dropout changes the output by far more than 1e-5).
    DeBERTa also on 3 tokens, whose distances reach only the middle rows of the relative
    embeddings: the engine drops out, projects and differentiates only those rows, with the
    whole table's pos_dropout mask at them."""
    enc, ref = load(family)
    inputs = case_inputs(ref, case)
    enc.zero_grad()
    h = enc.forward(**inputs, train=True, seed=int(ref[f"{case}/seed"]))
    assert np.abs(h - ref[f"{case}/last_hidden_state"]).max() <= 1e-5
    eval_case = "case0" if case == "train" else "case3"
    assert np.abs(h - ref[f"{eval_case}/last_hidden_state"]).max() > 1e-2  # dropout did act
    assert_gradients_match(enc.backward(ref[f"{case}/R"]), ref, case)


def test_padding_rows_get_no_gradient():
    """nn.Embedding(padding_idx=pad): the pad row of the word (and RoBERTa position) table."""
    for family, pad in (("bert", 0), ("roberta", 1), ("xlm-roberta", 1), ("distilbert", 0), ("albert", 0),
                        ("mpnet", 1), ("deberta-v3", 0)):
        enc, ref = load(family)
        enc.forward(**case_inputs(ref, "case0"))
        grads = enc.backward(ref["case0/R"])
        assert not grads["embeddings.word_embeddings.weight"][pad].any()
        if family.endswith("roberta") or family == "mpnet":
            assert not grads["embeddings.position_embeddings.weight"][pad].any()


FD_NAMES = {
    "bert": ["encoder.layer.0.attention.self.query.weight", "encoder.layer.1.intermediate.dense.bias",
             "embeddings.LayerNorm.weight", "encoder.layer.1.output.LayerNorm.bias"],
    "distilbert": ["transformer.layer.0.attention.q_lin.weight", "transformer.layer.1.ffn.lin1.bias",
                   "embeddings.LayerNorm.weight", "transformer.layer.1.output_layer_norm.bias"],
    "albert": ["encoder.albert_layer_groups.0.albert_layers.1.attention.query.weight",
               "encoder.albert_layer_groups.1.albert_layers.0.ffn.bias", "embeddings.LayerNorm.weight",
               "encoder.albert_layer_groups.1.albert_layers.1.full_layer_layer_norm.bias",
               "encoder.embedding_hidden_mapping_in.weight"],
}
FD_NAMES["mpnet"] = ["encoder.layer.0.attention.attn.q.weight", "encoder.layer.1.attention.attn.o.bias",
                     "encoder.relative_attention_bias.weight", "encoder.relative_attention_bias.weight",
                     "embeddings.position_embeddings.weight"]
FD_NAMES["deberta-v3"] = ["encoder.rel_embeddings.weight", "encoder.rel_embeddings.weight",
                          "encoder.rel_embeddings.weight", "encoder.LayerNorm.weight",
                          "encoder.layer.0.attention.self.key_proj.weight", "embeddings.LayerNorm.bias"]
FD_NAMES["deberta-v3-separate"] = ["encoder.rel_embeddings.weight", "encoder.rel_embeddings.weight",
                                   "encoder.layer.1.attention.self.pos_key_proj.weight",
                                   "encoder.layer.0.attention.self.pos_query_proj.bias",
                                   "embeddings.embed_proj.weight"]
FD_NAMES["deberta-v3-p2c"] = ["encoder.rel_embeddings.weight", "encoder.rel_embeddings.weight"]
FD_NAMES["deberta-v2-conv"] = ["encoder.conv.conv.weight", "encoder.conv.conv.weight", "encoder.conv.LayerNorm.bias",
                               "encoder.rel_embeddings.weight"]
FD_NAMES.update({"roberta": FD_NAMES["bert"], "xlm-roberta": FD_NAMES["bert"],
                 "electra": FD_NAMES["bert"] + ["embeddings_project.weight"]})


@pytest.mark.parametrize("family", sorted(FD_NAMES))
def test_finite_differences(family):
    enc, ref = load(family)
    inputs = dict(next(cases(ref))[1])
    R = ref["case0/R"]
    enc.zero_grad()
    enc.forward(**inputs)
    grads = enc.backward(R)
    state = enc.state_dict()
    rng = np.random.default_rng(0)
    for name in FD_NAMES[family]:
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


@pytest.mark.parametrize("family", ["bert", "deberta-v3"])
def test_a_second_backward_of_one_forward_adds_the_same_gradients(family):
    """A training forward keeps the GELU's derivative in place of its input (an eval forward keeps
    the input and backward recomputes): either way the forward's state survives its backward."""
    enc, ref = load(family)
    inputs = dict(next(cases(ref))[1])
    for train in (False, True):
        enc.zero_grad()
        enc.forward(**inputs, train=train, seed=5)
        once = enc.backward(ref["case0/R"])
        twice = enc.backward(ref["case0/R"])
        for n in once:
            np.testing.assert_allclose(twice[n], 2 * once[n], rtol=1e-5, atol=1e-7, err_msg=n)


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


def test_state_dict_tensors_are_independent_of_the_engine_and_of_each_other():
    """state_dict returns views of one copy of the buffer: writing one tensor changes neither the
    engine's weights nor any other tensor, and the next state_dict is fresh."""
    enc = Encoder(os.path.join(FIXTURES, "electra"))
    first = enc.state_dict()
    before = {k: v.copy() for k, v in first.items()}
    name = "embeddings.word_embeddings.weight"
    first[name][...] = 7.0
    for k, v in first.items():
        if k != name:
            np.testing.assert_array_equal(v, before[k])
    np.testing.assert_array_equal(enc.state_dict()[name], before[name])


def test_state_dict_into_a_given_array():
    """state_dict(out=...) fills the caller's array and returns views of it, equal to a fresh
    state_dict; an array of the wrong type, size or layout, or a read-only one, is refused."""
    enc = Encoder(os.path.join(FIXTURES, "electra"))
    fresh = enc.state_dict()
    out = np.full(enc.num_floats, np.nan, np.float32)
    got = enc.state_dict(out=out)
    assert list(got) == list(fresh)
    for k, v in got.items():
        assert np.shares_memory(v, out)
        np.testing.assert_array_equal(v, fresh[k])
    read_only = np.empty(enc.num_floats, np.float32)
    read_only.flags.writeable = False
    for bad in (np.empty(enc.num_floats, np.float64), np.empty(enc.num_floats - 1, np.float32),
                np.empty(2 * enc.num_floats, np.float32)[::2], read_only):
        with pytest.raises(ValueError, match=f"float32 array of shape \\({enc.num_floats},\\)"):
            enc.state_dict(out=bad)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        enc.state_dict(out=[0.0] * enc.num_floats)


@pytest.mark.parametrize("value, finite", [(np.nan, False), (np.inf, False), (-np.inf, False),
                                           (np.finfo(np.float32).max, True), (-np.finfo(np.float32).max, True)])
def test_params_finite_sees_one_bad_value_anywhere(value, finite):
    """params_finite (the trainer's end-of-epoch check, in place) against numpy's isfinite over the
    state_dict: one value written into the first, a middle and the last tensor of the buffer. Float32's
    largest values stay finite (their squares overflow float32, not the double sum)."""
    enc = Encoder(os.path.join(FIXTURES, "electra"))
    assert enc.params_finite()
    info = enc._c.param_info()
    for name, shape, off in (info[0], info[len(info) // 2], info[-1]):
        saved = enc.state_dict()[name].copy()
        enc._c.write_params(np.array([value], np.float32), off + int(np.prod(shape)) - 1)
        assert enc.params_finite() is finite
        assert bool(np.isfinite(enc.state_dict()[name]).all()) is finite
        enc._c.write_params(saved.reshape(-1), off)
        assert enc.params_finite()


def test_float16_weights_load_widened_exactly(tmp_path):
    """A float16 checkpoint (as many hub models are saved) loads into the float32 parameters
    widened exactly (each value the float16 one), tensor by tensor."""
    folder = os.path.join(FIXTURES, "bert")
    half = {k: v.astype(np.float16) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    os.makedirs(tmp_path / "half")
    shutil.copyfile(os.path.join(folder, "config.json"), tmp_path / "half" / "config.json")
    save_file(half, str(tmp_path / "half" / "model.safetensors"))
    got = Encoder(str(tmp_path / "half")).state_dict()
    assert len(got) > 20 and set(got) <= set(half)
    for name, arr in got.items():
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, half[name].astype(np.float64), err_msg=name)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_bfloat16_weights_load_widened_exactly(tmp_path, fmt):
    """A bfloat16 checkpoint loads into the float32 parameters widened exactly, tensor by tensor:
    each parameter is the float32 whose upper 16 bits the file holds (the bits made here by
    truncating the fixture's float32 values in numpy)."""
    folder = os.path.join(FIXTURES, "bert")
    full = load_file(os.path.join(folder, "model.safetensors"))
    bits = {k: (np.ascontiguousarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16) for k, v in full.items()}
    out = tmp_path / fmt
    os.makedirs(out)
    shutil.copyfile(os.path.join(folder, "config.json"), out / "config.json")
    if fmt == "safetensors":
        save_file({k: BFloat16Bits(b) for k, b in bits.items()}, str(out / "model.safetensors"))
    else:  # as torch.save lays a bfloat16 state dict out: a storage record per tensor
        entries, records = [], {}
        for i, (k, b) in enumerate(bits.items()):
            strides = tuple(int(np.prod(b.shape[d + 1:])) for d in range(b.ndim))
            entries += [S(k), tensor(str(i), b.size, 0, b.shape, strides, "BFloat16Storage")]
            records[str(i)] = b.tobytes()
        write_bin(out / "pytorch_model.bin", state_dict(*entries), records, align=True)
    got = Encoder(str(out)).state_dict()
    assert len(got) > 20 and set(got) <= set(bits)
    for name, arr in got.items():
        want = (bits[name].astype(np.uint32) << 16).view(np.float32)
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, want, err_msg=name)


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
    with pytest.raises(NotImplementedError, match="supported model types: albert, bert, camembert, deberta, "
                                                   "deberta-v2, distilbert, electra, ernie, modernbert, mpnet, "
                                                   "roberta, xlm-roberta"):
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


# ------------------------------------------------------------- the newer families
def cls_task_model(enc):
    """A one-LM classifier over CLS vectors (the trainer's task model) on ``enc``, random decoder."""
    decoder = np.random.default_rng(0).normal(0.0, 0.5, (2, enc.hidden_size)).astype(np.float32)
    return TaskModel([enc], "none", task=0, num_classes=2, state={"decoder.weight": decoder})


def cls_inputs(ids, mask, types=None):
    pool = np.zeros((ids.shape[0], 1, ids.shape[1]), np.float32)
    pool[:, 0, 0] = 1.0
    return [(ids.astype(np.int32), mask.astype(np.int32), None if types is None else types.astype(np.int32), pool)]


def test_sinusoidal_position_table_is_frozen():
    """DistilBERT's sinusoidal_pos_embds: HF's table, no gradient, and no optimizer update (no weight
    decay either), as for a requires_grad=False tensor that torch's optimizer never sees."""
    name = "embeddings.position_embeddings.weight"
    enc, ref = load("distilbert-sinusoidal")
    table = enc.state_dict()[name]
    np.testing.assert_array_equal(table, sinusoidal_table(40, 32))  # the fixture's table, made by HF
    fresh = Encoder.from_config(enc.config, seed=3)
    np.testing.assert_array_equal(fresh.state_dict()[name], table)
    inputs = case_inputs(ref, "case0")
    enc.forward(**inputs, train=True, seed=1)
    assert not enc.backward(ref["case0/R"])[name].any()
    before = enc.state_dict()
    model = cls_task_model(enc)
    model.train_step(cls_inputs(inputs["input_ids"], inputs["attention_mask"]), np.array([0, 1, 1, 0], np.int32),
                     learning_rates=[1e-2] * 3, weight_decay=[0.1] * 3, trainable=[True], seed=1)
    after = enc.state_dict()
    np.testing.assert_array_equal(after[name], before[name])
    assert not np.array_equal(after["embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"])
    # the learned-position variant does train its table
    enc2, ref2 = load("distilbert")
    before2 = enc2.state_dict()[name]
    cls_task_model(enc2).train_step(cls_inputs(inputs["input_ids"], inputs["attention_mask"]),
                                    np.array([0, 1, 1, 0], np.int32), learning_rates=[1e-2] * 3,
                                    weight_decay=[0.1] * 3, trainable=[True], seed=1)
    assert not np.array_equal(enc2.state_dict()[name], before2)


def albert_set(a, inner=2, layers=4, groups=2):
    """The (group, inner layer) weight set that layer application ``a`` of HF's AlbertTransformer runs."""
    i, j = divmod(a, inner)
    return int(i / (layers / groups)), j


def test_albert_layer_sets_are_shared_and_their_gradients_summed():
    """ALBERT with 4 layers over 2 groups of 2 inner layers: 4 weight sets run by 8 applications. The
    same network unrolled into 8 unshared layers (8 groups of 1) computes the same output, and each
    shared set's gradient is the sum of its two applications' gradients."""
    enc, ref = load("albert")
    layer_names = [n for n in enc.param_names() if "albert_layer_groups" in n]
    assert len(layer_names) == 4 * 16 and {n.split(".albert_layers.")[0][-1] for n in layer_names} == {"0", "1"}
    state = enc.state_dict()
    unrolled = {n: v for n, v in state.items() if "albert_layer_groups" not in n}
    for a in range(8):
        g, j = albert_set(a)
        src = f"encoder.albert_layer_groups.{g}.albert_layers.{j}."
        for n in layer_names:
            if n.startswith(src):
                unrolled[f"encoder.albert_layer_groups.{a}.albert_layers.0." + n[len(src):]] = state[n]
    cfg = {**enc.config, "num_hidden_layers": 8, "num_hidden_groups": 8, "inner_group_num": 1}
    flat = Encoder.from_state_dict(cfg, unrolled)
    inputs, R = case_inputs(ref, "case1"), ref["case1/R"]
    np.testing.assert_array_equal(flat.forward(**inputs), enc.forward(**inputs))
    shared, per_use = enc.backward(R), flat.backward(R)
    for n in layer_names:
        g, j = int(n.split(".")[2]), int(n.split(".")[4])
        rest = n.split(f"albert_layers.{j}.")[1]
        uses = [a for a in reversed(range(8)) if albert_set(a) == (g, j)]
        assert len(uses) == 2
        total = np.zeros_like(shared[n])
        for a in uses:  # last application first: PyTorch's arrival order
            total = total + per_use[f"encoder.albert_layer_groups.{a}.albert_layers.0.{rest}"]
        np.testing.assert_allclose(shared[n], total, rtol=1e-5, atol=1e-6 * np.abs(total).max())


def test_xlm_roberta_vocabulary_of_250k_rows():
    """xlm-roberta-base's 250,002-row word table: the tiny fixture's rows moved to the top of a
    250k-row table (ids remapped; <s>, <pad>, </s> keep ids 0-2) reproduce HF's hidden states and
    embedding gradients there, every other row gets no gradient, and one AdamW step updates the
    whole table (untouched rows only decay, p * (1 - lr * wd), as torch's AdamW does)."""
    V = 250002
    enc, ref = load("xlm-roberta")
    state = enc.state_dict()
    word = "embeddings.word_embeddings.weight"
    remap = np.arange(99)
    remap[3:] = V - 96 + np.arange(96)
    big_table = np.zeros((V, 32), np.float32)
    big_table[remap] = state[word]
    big = Encoder.from_state_dict({**enc.config, "vocab_size": V}, {**state, word: big_table})
    for c, inputs in cases(ref):
        inputs = {**inputs, "input_ids": remap[inputs["input_ids"]]}
        big.zero_grad()
        h = big.forward(**inputs)
        assert np.abs(h - ref[f"case{c}/last_hidden_state"]).max() <= 1e-5
        g = big.backward(ref[f"case{c}/R"])[word]
        r = ref[f"case{c}/grad/{word}"]
        assert np.linalg.norm(g[remap] - r) <= 1e-4 * np.linalg.norm(r)
        untouched = np.ones(V, bool)
        untouched[remap] = False
        assert not g[untouched].any()
    ids = remap[ref["case0/input_ids"]]
    lr, wd = 1e-3, 0.01
    cls_task_model(big).train_step(cls_inputs(ids, ref["case0/attention_mask"]), np.array([0, 1, 1, 0], np.int32),
                                   learning_rates=[lr] * 3, weight_decay=[wd] * 3, trainable=[True], seed=0,
                                   max_grad_norm=0.0)
    after = big.state_dict()[word]
    used = np.zeros(V, bool)
    used[np.unique(ids)] = True
    used[1] = False  # <pad>: padding_idx, no gradient
    np.testing.assert_allclose(after[~used], big_table[~used] * np.float32(1 - lr * wd), rtol=1e-7, atol=0)
    step = np.abs(after[used] - big_table[used] * np.float32(1 - lr * wd))
    assert np.median(step) > 0.5 * lr  # Adam's first step moves each used coordinate by about lr


def test_token_types_per_family():
    """BERT-like and ALBERT read token types; RoBERTa / XLM-R (one type) take zeros; DistilBERT has
    none and refuses them (transformers' DistilBertModel has no token_type_ids argument)."""
    assert load("albert")[0].uses_token_types and load("bert")[0].uses_token_types
    assert not load("xlm-roberta")[0].uses_token_types
    enc, ref = load("distilbert")
    assert not enc.uses_token_types
    ids = ref["case0/input_ids"]
    with pytest.raises(ValueError, match="DistilBERT model has no token type embeddings; pass no token_type_ids"):
        enc.forward(ids, ref["case0/attention_mask"], np.zeros_like(ids))
    assert "embeddings.token_type_embeddings.weight" not in enc.param_names()


def fixture_config(name):
    with open(os.path.join(FIXTURES, name, "config.json")) as f:
        return json.load(f)


def test_family_config_errors_are_clear():
    distil, albert, bert = fixture_config("distilbert"), fixture_config("albert"), fixture_config("bert")
    with pytest.raises(NotImplementedError, match="activation 'relu' is not supported; supported: gelu"):
        engine_config({**distil, "activation": "relu"})
    with pytest.raises(ModelConfigError, match="missing required key 'dim'"):
        engine_config({k: v for k, v in distil.items() if k != "dim"})
    with pytest.raises(ModelConfigError, match="missing required key 'num_attention_heads'"):
        engine_config({k: v for k, v in albert.items() if k != "num_attention_heads"})
    with pytest.raises(ModelConfigError, match=r"config: num_hidden_groups: 0 is outside \[1, 4096\]"):
        Encoder.from_config({**albert, "num_hidden_groups": 0})
    with pytest.raises(ValueError, match="num_hidden_groups and inner_group_num must be > 0, got 0 and 2"):
        _C.Encoder({**engine_config(albert), "num_hidden_groups": 0})
    with pytest.raises(ValueError, match="hidden_size 32 is not a multiple of num_attention_heads 5"):
        Encoder.from_config({**distil, "n_heads": 5})
    # what only one family has is refused for the others, at the C level too
    cfg = engine_config(bert)
    with pytest.raises(ValueError, match="shared layer groups .* are ALBERT's, not BERT's"):
        _C.Encoder({**cfg, "num_hidden_groups": 2})
    with pytest.raises(ValueError, match="embedding_size != hidden_size is only supported for ELECTRA, ALBERT and "
                                         "DeBERTa, not BERT"):
        _C.Encoder({**cfg, "embedding_size": 16})
    with pytest.raises(ValueError, match="DistilBERT has no token types"):
        _C.Encoder({**engine_config(distil), "type_vocab_size": 2})


def test_family_defaults_follow_the_config_classes():
    """Keys a config.json may omit take the transformers config class defaults: ALBERT's dropouts 0,
    gelu_new and embedding_size 128; XLM-R's pad 1; DistilBERT's eps fixed at 1e-12."""
    albert = {k: v for k, v in fixture_config("albert").items()
              if k not in ("hidden_dropout_prob", "attention_probs_dropout_prob", "hidden_act", "embedding_size")}
    cfg = engine_config(albert)
    assert (cfg["hidden_dropout_prob"], cfg["attention_probs_dropout_prob"], cfg["embedding_size"]) == (0.0, 0.0, 128)
    assert cfg["activation"] == 1 and cfg["family"] == 4
    xlmr = {k: v for k, v in fixture_config("xlm-roberta").items() if k != "pad_token_id"}
    assert engine_config(xlmr)["pad_token_id"] == 1
    distil = engine_config({**fixture_config("distilbert"), "layer_norm_eps": 1e-5})
    assert distil["layer_norm_eps"] == 1e-12 and distil["hidden_size"] == 32 and distil["type_vocab_size"] == 0


def test_mpnet_config_follows_transformers_code():
    """MPNet: no token types; padding index 1 and bucketing into 32 buckets come from transformers'
    code, not from config.json (pad_token_id, relative_attention_num_buckets only sizes the table)."""
    mpnet = fixture_config("mpnet")
    cfg = engine_config({**mpnet, "pad_token_id": 0})
    assert cfg["pad_token_id"] == 1 and cfg["type_vocab_size"] == 0 and cfg["relative_attention_num_buckets"] == 32
    no_buckets = {k: v for k, v in mpnet.items() if k != "relative_attention_num_buckets"}
    assert engine_config(no_buckets)["relative_attention_num_buckets"] == 32
    enc = Encoder.from_config({**mpnet, "relative_attention_num_buckets": 40})
    assert dict((n, s) for n, s, _ in enc._c.param_info())["encoder.relative_attention_bias.weight"] == (40, 4)
    with pytest.raises(ValueError, match="relative_attention_num_buckets 16 is below the 32 buckets"):
        Encoder.from_config({**mpnet, "relative_attention_num_buckets": 16})
    with pytest.raises(ValueError, match="relative_attention_num_buckets is MPNet's"):
        _C.Encoder({**engine_config(fixture_config("bert")), "relative_attention_num_buckets": 32})
    with pytest.raises(ValueError, match="MPNet's padding index is 1"):
        _C.Encoder({**cfg, "pad_token_id": 0})
    enc, ref = load("mpnet")
    assert not enc.uses_token_types and enc.max_positions == 140
    ids = ref["case0/input_ids"]
    with pytest.raises(ValueError, match="MPNet model has no token type embeddings"):
        enc.forward(ids, ref["case0/attention_mask"], np.zeros_like(ids))
    with pytest.raises(ValueError, match="sequence length 141 exceeds the model's maximum of 140"):
        enc.forward(np.full((1, 141), 5))


@pytest.mark.parametrize("family", ["deberta-v3", "deberta-v3-separate", "deberta-v2-conv", "mpnet"])
def test_relative_attention_gradients_are_deterministic(family):
    """The scatter-adds of the gathers (and every other reduction) run in a fixed order: two
    backward passes of the same batch give bit-identical gradients for a given thread count."""
    enc, ref = load(family)
    inputs = case_inputs(ref, "case0")
    runs = []
    for _ in range(2):
        enc.zero_grad()
        enc.forward(**inputs, train=True, seed=3)
        runs.append(enc.backward(ref["case0/R"]))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])


def test_deberta_v1_config_and_names():
    """DeBERTa (v1): DebertaModel ignores v2's keys (buckets, shared or normalised relative projections,
    ConvLayer) and so does the engine; talking_head is refused; the engine's flag is DeBERTa's only.
    Its checkpoints are read and written under v1's names: in_proj of the wrong shape or missing is
    named as such, and a state dict round trip (under the task prefix, with an MLM head) keeps HF's
    forward."""
    v1 = fixture_config("deberta")
    cfg = engine_config({**v1, "position_buckets": 8, "share_att_key": True, "norm_rel_ebd": "layer_norm",
                         "conv_kernel_size": 3})
    assert (cfg["position_buckets"], cfg["share_att_key"], cfg["norm_rel_ebd"], cfg["zero_key_biases"]) == \
        (-1, 0, 0, 1) and "conv_kernel_size" not in cfg
    assert (cfg["pos_att"], cfg["max_relative_positions"]) == (3, 40)
    with pytest.raises(NotImplementedError, match="talking_head is not supported"):
        engine_config({**v1, "talking_head": True})
    with pytest.raises(ValueError, match="relative attention and position_biased_input are DeBERTa's, not BERT's"):
        _C.Encoder({**engine_config(fixture_config("bert")), "zero_key_biases": 1})
    enc, ref = load("deberta")
    state = {f"deberta.{k}": v for k, v in enc.state_dict().items()}
    state["lm_predictions.lm_head.bias"] = np.zeros(99, np.float32)
    enc.load_state_dict(state)
    inputs = case_inputs(ref, "case0")
    assert np.abs(enc.forward(**inputs) - ref["case0/last_hidden_state"]).max() <= 1e-5
    name = "deberta.encoder.layer.1.attention.self.in_proj.weight"
    with pytest.raises(ValueError, match=r"'deberta.encoder.layer.1.attention.self.in_proj.weight' has shape "
                                         r"\(32, 32\) but the config implies \(96, 32\)"):
        enc.load_state_dict({**state, name: np.zeros((32, 32), np.float32)})
    with pytest.raises(ValueError, match="in_proj.weight' has dtype int32, expected floats"):
        enc.load_state_dict({**state, name: np.zeros((96, 32), np.int32)})
    with pytest.raises(ValueError, match=r"missing weight tensor\(s\) encoder.layer.1.attention.self.in_proj.weight"):
        enc.load_state_dict({k: v for k, v in state.items() if k != name})


def test_deberta_config_follows_transformers():
    """DebertaV2Config's keys and the getattr defaults of its modules: pos_att_type as a string or a
    list, max_relative_positions < 1 meaning max_position_embeddings, norm_rel_ebd as '|' list; what the
    engine does not implement (a tanh ConvLayer) and what transformers cannot run are refused."""
    v3 = fixture_config("deberta-v3")
    cfg = engine_config({**v3, "pos_att_type": "c2p|p2c", "max_relative_positions": -1,
                         "norm_rel_ebd": "none | layer_norm"})
    assert (cfg["pos_att"], cfg["max_relative_positions"], cfg["norm_rel_ebd"]) == (3, 40, 1)
    assert (cfg["share_att_key"], cfg["position_biased_input"], cfg["type_vocab_size"]) == (1, 0, 0)
    bare = {k: v for k, v in v3.items() if k not in ("share_att_key", "norm_rel_ebd", "position_buckets",
                                                       "position_biased_input", "type_vocab_size")}
    cfg = engine_config(bare)
    assert (cfg["share_att_key"], cfg["norm_rel_ebd"], cfg["position_buckets"], cfg["position_biased_input"],
            cfg["type_vocab_size"]) == (0, 0, -1, 1, 0)
    with pytest.raises(NotImplementedError, match="conv_act 'tanh' is not supported"):
        engine_config({**v3, "conv_kernel_size": 3})  # DebertaV2's default conv_act
    with pytest.raises(ValueError, match="needs an odd conv_kernel_size"):
        Encoder.from_config({**v3, "conv_kernel_size": 2, "conv_act": "gelu"})
    with pytest.raises(ModelConfigError, match="attention_head_size 4 x num_attention_heads 4 != hidden_size 32"):
        engine_config({**v3, "attention_head_size": 4})
    with pytest.raises(ValueError, match="relative attention and position_biased_input are DeBERTa's, not BERT's"):
        _C.Encoder({**engine_config(fixture_config("bert")), "relative_attention": 1})
    enc, ref = load("deberta-v3")
    assert not enc.uses_token_types and "embeddings.position_embeddings.weight" not in enc.param_names()
    # a DeBERTa-v3 checkpoint under the task prefix, with the unused absolute table and an MLM head
    state = {f"deberta.{k}": v for k, v in enc.state_dict().items()}
    state["deberta.embeddings.position_embeddings.weight"] = np.zeros((512, 32), np.float32)
    state["lm_predictions.lm_head.bias"] = np.zeros(99, np.float32)
    enc.load_state_dict(state)
    inputs = case_inputs(ref, "case0")
    assert np.abs(enc.forward(**inputs) - ref["case0/last_hidden_state"]).max() <= 1e-5


@pytest.mark.parametrize("name", sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d))))
def test_param_table_is_the_created_encoders_layout(name):
    """``_C.encoder_param_table`` (the layout checked against the weights before anything is
    allocated) reports exactly the parameters ``me_encoder_create`` lays out, for every family's
    fixture: names, shapes, offsets and the buffer length (frozen sinusoidal positions included)."""
    cfg = engine_config(fixture_config(name))
    table, nfloats = _C.encoder_param_table(cfg)
    enc = _C.Encoder(cfg, device="cpu")
    assert [(n, tuple(s), o) for n, s, o in table] == [(n, tuple(s), o) for n, s, o in enc.param_info()]
    assert nfloats == enc.num_floats
    # and the fixture's weights are exactly that table's tensors
    shapes = {normalize_name(k): tuple(v.shape) for k, v in load_state_dict(os.path.join(FIXTURES, name)).items()}
    if name in DEBERTA_V1:  # v2's layout under v1's names: the encoder reads and writes exactly DebertaModel's
        v1 = Encoder(os.path.join(FIXTURES, name))
        assert {n: v.shape for n, v in v1.state_dict().items()} == shapes
        assert v1.param_names() == list(v1.state_dict())
    else:
        assert {n: tuple(s) for n, s, _ in table}.items() <= shapes.items()


def test_ernie_task_type_table_only_with_use_task_id():
    """model_type ernie is BERT's encoder; with ``use_task_id`` (ErnieEmbeddings' task_type_embeddings,
    row 0 added to every token: checked against HF by the ``ernie`` fixture above) its layout gains
    the task type table [task_type_vocab_size, H], without it the layout is BERT's. Task types on
    another family are refused, naming the field."""
    cfg = fixture_config("ernie")
    with_task, nf_with = _C.encoder_param_table(engine_config(cfg))
    without, nf_without = _C.encoder_param_table(engine_config({**cfg, "use_task_id": False}))
    task = [(n, tuple(s)) for n, s, _ in with_task if n not in {m for m, _, _ in without}]
    assert task == [("embeddings.task_type_embeddings.weight", (3, 32))]
    assert nf_with - nf_without == 3 * 32
    assert "task_type_vocab_size" not in engine_config({**cfg, "use_task_id": False})
    roberta = {**engine_config(fixture_config("roberta")), "task_type_vocab_size": 3}
    with pytest.raises(ValueError, match=r"task type embeddings \(task_type_vocab_size 3\) are ERNIE.s"
                                         r".*RoBERTa has none"):
        _C.encoder_param_table(roberta)
