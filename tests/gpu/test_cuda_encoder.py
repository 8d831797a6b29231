"""The whole encoder on the CUDA backend against the CPU engine on the fixture
models (tests/fixtures/models, every family): eval and train-mode forward, every parameter
gradient, seeded dropout identical to the CPU's masks, and bit-for-bit
repeatability on the GPU."""
import os

import numpy as np
import pytest

from multienc.engine import Encoder

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "models")
FAMILIES = ["bert", "roberta", "electra", "xlm-roberta", "distilbert", "distilbert-sinusoidal", "albert",
            "albert-uneven", "ernie"]


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def pair(family):
    folder = os.path.join(FIXTURES, family)
    return (Encoder(folder, device="cpu"), Encoder(folder, device="cuda"),
            np.load(os.path.join(folder, "reference.npz")))


def cases(ref):
    c = 0
    while f"case{c}/input_ids" in ref:
        yield c, {k: ref[f"case{c}/{k}"] for k in ("input_ids", "attention_mask", "token_type_ids")
                  if f"case{c}/{k}" in ref}
        c += 1


def check_grads(g_cpu, g_gpu, tol=1e-4):
    assert set(g_cpu) == set(g_gpu)
    scale = np.median([np.linalg.norm(g) for g in g_cpu.values()])
    for name, c in g_cpu.items():
        g = g_gpu[name]
        if np.linalg.norm(c) > 1e-4 * scale:
            assert rel(g, c) <= tol, (name, rel(g, c))
        else:  # analytically zero (the key bias): rounding noise on both sides
            assert np.linalg.norm(g - c) <= 1e-4 * scale, name


def test_parameters_live_on_the_device():
    cpu, gpu, _ = pair("bert")
    assert gpu.device == "cuda"
    for name, arr in cpu.state_dict().items():
        np.testing.assert_array_equal(gpu.state_dict()[name], arr)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("train", [False, True])
def test_forward_backward_match_the_cpu_engine(family, train):
    cpu, gpu, ref = pair(family)
    for c, inputs in cases(ref):
        kw = dict(train=train, seed=17 + c)
        h_cpu, h_gpu = cpu.forward(**inputs, **kw), gpu.forward(**inputs, **kw)
        assert np.abs(h_gpu - h_cpu).max() <= 1e-5, np.abs(h_gpu - h_cpu).max()
        if not train:
            assert np.abs(h_gpu - ref[f"case{c}/last_hidden_state"]).max() <= 1e-5
        cpu.zero_grad()
        gpu.zero_grad()
        check_grads(cpu.backward(ref[f"case{c}/R"]), gpu.backward(ref[f"case{c}/R"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_forward_matches_the_cpu_engine(family):
    """forward(inference=True), what LanguageModel.embed runs: two layers' activations reused
    layer after layer on the device, the eval forward's values."""
    cpu, gpu, ref = pair(family)
    for c, inputs in cases(ref):
        h_gpu = gpu.forward(**inputs, inference=True)
        assert np.abs(h_gpu - cpu.forward(**inputs, inference=True)).max() <= 1e-5
        assert np.abs(h_gpu - ref[f"case{c}/last_hidden_state"]).max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_runs_repeat_exactly(family):
    _, gpu, ref = pair(family)
    inputs = dict(next(cases(ref))[1])
    outs, grads = [], []
    for _ in range(2):
        gpu.zero_grad()
        outs.append(gpu.forward(**inputs, train=True, seed=3))
        grads.append(gpu.backward(ref["case0/R"]))
    np.testing.assert_array_equal(outs[0], outs[1])
    for n in grads[0]:
        np.testing.assert_array_equal(grads[0][n], grads[1][n])


def test_padding_rows_get_no_gradient_on_the_gpu():
    _, gpu, ref = pair("roberta")
    gpu.forward(ref["case0/input_ids"], ref["case0/attention_mask"])
    grads = gpu.backward(ref["case0/R"])
    assert not grads["embeddings.word_embeddings.weight"][1].any()
    assert not grads["embeddings.position_embeddings.weight"][1].any()


def test_bad_input_is_still_a_value_error_on_the_gpu():
    _, gpu, _ = pair("bert")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        gpu.forward(np.array([[1, 2, 99]]))
    h = gpu.forward(np.array([[1, 2, 3]]))  # and the encoder still works after it
    assert h.shape == (1, 3, 32) and np.isfinite(h).all()


def test_larger_batch_matches_the_cpu_engine():
    """A batch of 8 x 40 (the fixtures' longest) with ragged padding, training mode."""
    cpu, gpu, _ = pair("bert")
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 99, (8, 40))
    mask = (np.arange(40)[None] < rng.integers(1, 41, 8)[:, None]).astype(np.int64)
    h_cpu = cpu.forward(ids, mask, train=True, seed=9)
    h_gpu = gpu.forward(ids, mask, train=True, seed=9)
    assert np.abs(h_gpu - h_cpu).max() <= 1e-5
    R = rng.standard_normal(h_cpu.shape).astype(np.float32)
    cpu.zero_grad()
    gpu.zero_grad()
    check_grads(cpu.backward(R), gpu.backward(R))


@pytest.mark.large
def test_a_realistic_shape_matches_the_cpu_engine():
    """BERT-large-size layers (hidden 1024, 16 heads of 64, intermediate 4096) at 32 x 512 with
    ragged padding in train mode: launch grids, strides and the T x T probabilities at the sizes of
    real batches (the fixtures are tiny). Two layers keep the CPU side to seconds. Bars: max abs
    1e-4 on the hidden states, relative 1e-3 per gradient (sums over 16k tokens in other orders)."""
    config = dict(model_type="bert", vocab_size=30522, hidden_size=1024, num_hidden_layers=2,
                  num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512,
                  type_vocab_size=2)
    cpu = Encoder.from_config(config, seed=3, device="cpu")
    gpu = Encoder.from_config(config, seed=3, device="cuda")
    rng = np.random.default_rng(11)
    B, T = 32, 512
    ids = rng.integers(1, config["vocab_size"], (B, T))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int64)
    types = (np.arange(T)[None] >= lengths[:, None] // 2).astype(np.int64)
    h_cpu = cpu.forward(ids, mask, types, train=True, seed=21)
    h_gpu = gpu.forward(ids, mask, types, train=True, seed=21)
    assert np.isfinite(h_gpu).all()
    assert np.abs(h_gpu - h_cpu).max() <= 1e-4, np.abs(h_gpu - h_cpu).max()
    R = rng.standard_normal(h_cpu.shape).astype(np.float32)
    cpu.zero_grad()
    gpu.zero_grad()
    check_grads(cpu.backward(R), gpu.backward(R), tol=1e-3)
