"""The C task model (LMs + pooling + combiner + dropout + decoder + loss) against a
float64 numpy reference of the head, for every combine method, with the
encoders' gradients checked through their own (HF-verified) backward."""
import os

import numpy as np
import pytest

from multienc.engine import _C
from multienc.engine import Encoder, hidden_dropout_key
from _numeric import numeric_grad

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "models")
COMBINE = {"none": 0, "concat": 1, "mean": 2, "dme": 3}


def encoders(names):
    return [Encoder(os.path.join(FIX, n)) for n in names]


def batch(rng, enc, B, T, pooling):
    pad = enc.config.get("pad_token_id", 0)
    ids = rng.integers(3, 99, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    lengths = rng.integers(2, T + 1, B)
    lengths[0] = T
    pool = np.zeros((B, 1, T), np.float32)
    for b, n in enumerate(lengths):
        ids[b, n:] = pad
        mask[b, n:] = 0
        if pooling == "cls":
            pool[b, 0, 0] = 1.0
        else:
            pool[b, 0, :n] = 1.0 / n
    return ids, mask, None, pool


def init_head(model, rng):
    flat = np.zeros(model.num_floats, np.float32)
    info = model.param_info()
    for name, shape, off in info:
        n = int(np.prod(shape))
        flat[off:off + n] = (rng.standard_normal(n) * 0.3 + (1.0 if "layer_norm.weight" in name else 0.0))
    model.write_params(flat)
    return {name: flat[off:off + int(np.prod(shape))].reshape(shape).astype(np.float64)
            for name, shape, off in info}


def ln64(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def head_loss(pooled, W, combine, use_ln, task, targets, eps=1e-3):
    """float64 forward of the head from pooled LM vectors to the loss (and DME weights)."""
    n = len(pooled)
    alpha = None
    if combine == "none":
        comb = pooled[0]
    elif combine == "concat":
        xs = [ln64(p, W["combiner.layer_norm.weight"], W["combiner.layer_norm.bias"], eps) if use_ln else p
              for p in pooled]
        comb = np.concatenate(xs, 1)
    else:
        xs = [p @ W[f"combiner.projections.{i}.weight"].T + W[f"combiner.projections.{i}.bias"]
              for i, p in enumerate(pooled)]
        if use_ln:
            xs = [ln64(x, W["combiner.layer_norm.weight"], W["combiner.layer_norm.bias"], eps) for x in xs]
        X = np.stack(xs)  # [n, R, P]
        if combine == "dme":
            s = (X @ W["combiner.attention.weight"].T)[..., 0] + W["combiner.attention.bias"][0]
            e = np.exp(s - s.max(0))
            alpha = e / e.sum(0)
        else:
            alpha = np.full(X.shape[:2], 1.0 / n)
        comb = (alpha[..., None] * X).sum(0)
    logits = comb @ W["decoder.weight"].T + W["decoder.bias"]
    if task == 0:
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = -logp[np.arange(len(targets)), targets].mean()
    else:
        loss = ((logits - targets.reshape(logits.shape)) ** 2).mean()
    return loss, logits, alpha




CASES = [("none", ["bert"], False, 0, "cls"),
         ("concat", ["bert", "roberta"], False, 0, "mean"),
         ("concat", ["bert", "roberta"], True, 1, "cls"),
         ("mean", ["electra", "roberta"], True, 0, "mean"),
         ("dme", ["bert", "roberta", "electra"], False, 0, "cls"),
         ("dme", ["electra", "bert"], True, 1, "mean")]


@pytest.mark.parametrize("combine,names,use_ln,task,pooling", CASES)
def test_head_forward_backward_matches_float64(combine, names, use_ln, task, pooling):
    rng = np.random.default_rng(len(names) * 10 + task)
    encs = encoders(names)
    C = 3 if task == 0 else 2
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE[combine], use_layer_norm=int(use_ln),
                                                task=task, num_classes=C))
    W = init_head(model, rng)
    B, T = 4, 9
    inputs = [batch(rng, e, B, T, pooling) for e in encs]
    targets = rng.integers(0, C, B).astype(np.int32) if task == 0 else rng.standard_normal((B, C)).astype(np.float32)
    out, alpha, loss, _ = model.forward(inputs, targets)
    # the LMs' hidden states through the engine (verified against HF elsewhere)
    hs = [e.forward(ids, mask).astype(np.float64) for e, (ids, mask, _, _) in zip(encs, inputs)]
    pooled = [np.einsum("bkt,bth->bkh", inp[3].astype(np.float64), h)[:, 0] for inp, h in zip(inputs, hs)]
    ref_loss, ref_logits, ref_alpha = head_loss(pooled, W, combine, use_ln, task, targets)
    assert abs(loss - ref_loss) < 1e-5 * max(1, abs(ref_loss))
    np.testing.assert_allclose(out, ref_logits, rtol=1e-4, atol=1e-5)
    if ref_alpha is not None:
        np.testing.assert_allclose(alpha, ref_alpha, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alpha.sum(0), 1.0, rtol=1e-6)
    # backward of the head vs numeric float64 gradients of the reference
    model.backward([True] * len(encs))
    flat = np.empty(model.num_floats, np.float32)
    model.read_grads(flat)
    for name, shape, off in model.param_info():
        got = flat[off:off + int(np.prod(shape))].reshape(shape)
        ref = numeric_grad(lambda: head_loss(pooled, W, combine, use_ln, task, targets)[0], W[name])
        err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12)
        # combiner.attention.bias: the exact gradient is 0 (a bias shared by the LMs' scores does not
        # move their softmax), so what remains is float32 rounding of a sum of order-1 terms
        assert err < 1e-4 or np.abs(got - ref).max() < 2e-7, (name, err)
    # encoder gradients: dL/dpooled (float64) pushed through each encoder's own backward
    for i, (e, inp) in enumerate(zip(encs, inputs)):
        dpooled = numeric_grad(lambda: head_loss(pooled, W, combine, use_ln, task, targets)[0], pooled[i])
        dh = np.einsum("bkt,bh->bth", inp[3].astype(np.float64), dpooled).astype(np.float32)
        in_model = e.gradients()
        e.zero_grad()
        e.forward(inp[0], inp[1])
        ref = e.backward(dh)
        for name in ref:
            r, g = ref[name], in_model[name]
            if np.linalg.norm(r) > 1e-6:
                assert np.linalg.norm(g - r) / np.linalg.norm(r) < 1e-3, (names[i], name)


def test_frozen_lm_gets_no_gradient_and_no_update():
    rng = np.random.default_rng(5)
    encs = encoders(["bert", "roberta"])
    before = [e.state_dict() for e in encs]
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE["dme"], task=0, num_classes=2))
    init_head(model, rng)
    inputs = [batch(rng, e, 3, 6, "cls") for e in encs]
    targets = np.array([0, 1, 1], np.int32)
    for step in range(3):
        loss, norm = model.train_step(inputs, targets, lr=[1e-2] * 4, weight_decay=[0.01] * 4,
                                      trainable=[True, False], seed=step)
        assert np.isfinite(loss) and norm > 0
    after = [e.state_dict() for e in encs]
    for name in before[1]:
        np.testing.assert_array_equal(before[1][name], after[1][name])
    assert any(not np.array_equal(before[0][n], after[0][n]) for n in before[0])


def test_gradient_buffers_are_made_at_their_first_need_only():
    """An LM's gradient buffer is made when something needs it (training's preparation, a backward,
    zeroing for a data-parallel sum, the buffers' addresses), not with the encoder: a model that
    only predicts holds none, and a frozen LM never gets one. Until it exists, gradients read as
    zeros; once made, a step is the same as with a buffer made up front (the first-step tests
    above and below all start from new buffers)."""
    rng = np.random.default_rng(11)
    encs = encoders(["bert", "roberta", "electra"])
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE["dme"], task=0, num_classes=2))
    init_head(model, rng)
    inputs = [batch(rng, e, 3, 6, "cls") for e in encs]
    targets = np.array([0, 1, 1], np.int32)
    model.forward(inputs)
    model.forward(inputs, targets, train=False)
    assert [e.gradient_bytes for e in encs] == [0, 0, 0]
    assert all(not g.any() for g in encs[0].gradients().values())
    assert encs[0].gradient_bytes == 0
    model.prepare_training([True, False, False])
    assert [e.gradient_bytes for e in encs] == [4 * encs[0]._c.num_floats, 0, 0]
    for step in range(2):
        model.train_step(inputs, targets, lr=[1e-2] * 5, weight_decay=[0.01] * 5, trainable=[True, False, False],
                         seed=step)
    assert encs[1].gradient_bytes == 0 and encs[2].gradient_bytes == 0
    model.zero_grads([False, True, False])
    assert encs[1].gradient_bytes == 4 * encs[1]._c.num_floats and encs[2].gradient_bytes == 0
    addresses = _C.buffer_addresses(model, "grads")
    assert encs[2].gradient_bytes == 4 * encs[2]._c.num_floats
    assert [n for _, _, n in addresses] == [model.num_floats] + [e._c.num_floats for e in encs]
    assert all(address for _, address, _ in addresses)
    alone = encoders(["bert"])[0]
    ids, mask, _, _ = batch(rng, alone, 2, 5, "cls")
    out = alone.forward(ids, mask, train=True, seed=1)
    assert alone.gradient_bytes == 0
    grads = alone.backward(np.ones_like(out))
    assert alone.gradient_bytes == 4 * alone._c.num_floats and any(g.any() for g in grads.values())


def test_clipping_scales_every_gradient_like_torch():
    rng = np.random.default_rng(6)
    encs = encoders(["bert", "electra"])
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE["concat"], task=0, num_classes=2))
    init_head(model, rng)
    inputs = [batch(rng, e, 4, 7, "mean") for e in encs]
    targets = np.array([0, 1, 1, 0], np.int32)
    model.forward(inputs, targets, train=True, seed=3)
    model.backward([True, True])
    unclipped = [grads(model)] + [grads(e._c) for e in encs]
    total = np.sqrt(sum((u.astype(np.float64) ** 2).sum() for u in unclipped))
    max_norm = total / 3  # forces clipping
    before = [params(model)] + [params(e._c) for e in encs]
    # The first AdamW step moves each weight by -lr * g / (|g| + eps) (bias corrections cancel), so
    # with lr 1 and eps 1 the step shows the clipped gradient g.
    loss, norm = model.train_step(inputs, targets, lr=[1.0] * 4, weight_decay=[0.0] * 4,
                                  trainable=[True, True], seed=3, max_grad_norm=max_norm, eps=1.0)
    assert abs(norm - total) < 1e-5 * total
    coef = max_norm / (total + 1e-6)
    after = [params(model)] + [params(e._c) for e in encs]
    for u, b, a in zip(unclipped, before, after):
        g = u.astype(np.float64) * coef
        np.testing.assert_allclose(a.astype(np.float64) - b, -g / (np.abs(g) + 1.0), rtol=1e-3, atol=2e-7)
    # the same pass zeroed every gradient for the next step
    assert not grads(model).any()
    assert not any(grads(e._c).any() for e in encs)


def params(c) -> np.ndarray:
    """A copy of a C model's or encoder's flat parameter buffer."""
    flat = np.empty(c.num_floats, np.float32)
    c.read_params(flat)
    return flat


def grads(c) -> np.ndarray:
    """A copy of a C model's or encoder's flat gradient buffer."""
    flat = np.empty(c.num_floats, np.float32)
    c.read_grads(flat)
    return flat


def test_same_seed_same_step():
    """Identical losses and weights for the same seed (same thread count)."""
    results = []
    for _ in range(2):
        rng = np.random.default_rng(8)
        encs = [Encoder(os.path.join(FIX, "bert"), {"hidden_dropout_prob": 0.2}), Encoder(os.path.join(FIX, "roberta"))]
        model = _C.Model([e._c for e in encs], dict(combine=COMBINE["dme"], task=0, num_classes=2,
                                                    combine_dropout=0.3))
        init_head(model, rng)
        inputs = [batch(rng, e, 3, 6, "cls") for e in encs]
        losses = [model.train_step(inputs, np.array([0, 1, 0], np.int32), lr=[1e-3] * 4,
                                   weight_decay=[0.01] * 4, trainable=[True, True], seed=s)[0] for s in range(3)]
        results.append((losses, encs[0].state_dict()))
    assert results[0][0] == results[1][0]
    for n in results[0][1]:
        np.testing.assert_array_equal(results[0][1][n], results[1][1][n])


def test_bad_inputs_are_clear():
    encs = encoders(["bert", "roberta"])
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE["concat"], task=0, num_classes=2))
    rng = np.random.default_rng(0)
    inputs = [batch(rng, e, 3, 6, "cls") for e in encs]
    with pytest.raises(ValueError, match="expected inputs for 2 language models"):
        model.forward(inputs[:1])
    with pytest.raises(ValueError, match="outside the 2 classes"):
        model.forward(inputs, np.array([0, 1, 2], np.int32))
    with pytest.raises(ValueError, match="expected 3 class ids"):
        model.forward(inputs, np.array([0, 1], np.int32))
    bad = list(inputs)
    bad[1] = (inputs[1][0][:2], inputs[1][1][:2], None, inputs[1][3][:2])
    with pytest.raises(ValueError, match="shapes disagree"):
        model.forward(bad)
    with pytest.raises(ValueError, match="language model 2: input_ids"):
        ids = inputs[1][0].copy()
        ids[0, 0] = 10 ** 6
        model.forward([inputs[0], (ids, inputs[1][1], None, inputs[1][3])])
    with pytest.raises(ValueError, match="exactly one language model"):
        _C.Model([e._c for e in encs], dict(combine=COMBINE["none"], task=0, num_classes=2))
    with pytest.raises(ValueError, match="equal hidden sizes"):
        _C.Model([encs[0]._c, Encoder.from_config({**encs[0].config, "hidden_size": 48,
                                                    "num_attention_heads": 4})._c],
                 dict(combine=COMBINE["concat"], use_layer_norm=1, task=0, num_classes=2))


def test_nan_loss_stops_without_update():
    encs = encoders(["bert"])
    model = _C.Model([encs[0]._c], dict(combine=COMBINE["none"], task=1, num_classes=1))
    rng = np.random.default_rng(1)
    init_head(model, rng)
    inputs = [batch(rng, encs[0], 2, 5, "cls")]
    before = encs[0].state_dict()
    with pytest.raises(ValueError, match="loss is NaN"):
        model.train_step(inputs, np.array([np.nan, 1.0], np.float32), lr=[1e-3] * 3, weight_decay=[0.0] * 3,
                         trainable=[True])
    after = encs[0].state_dict()
    for n in before:
        np.testing.assert_array_equal(before[n], after[n])


@pytest.mark.parametrize("combine,names", [("dme", ("bert", "electra", "roberta")),
                                           ("concat", ("bert", "electra", "roberta")),
                                           ("dme", ("mpnet", "deberta-v3", "modernbert")),
                                           ("mean", ("albert", "distilbert-sinusoidal", "deberta-v2-conv"))])
def test_lms_side_by_side_compute_the_same_bits(monkeypatch, combine, names):
    """The LMs run side by side on shares of the threads or one after another on all of them
    (whichever the model measures faster): the same losses, norms and weights either way, for
    every family (no op's result depends on its team's thread count)."""
    results = []
    for schedule in ("sequential", "side-by-side"):
        monkeypatch.setenv("MULTIENC_LM_SCHEDULE", schedule)
        rng = np.random.default_rng(9)
        encs = [with_dropout(n) for n in names]
        model = _C.Model([e._c for e in encs], dict(combine=COMBINE[combine], task=0, num_classes=2))
        init_head(model, rng)
        inputs = [batch(rng, e, 3, 6 + i, "cls") for i, e in enumerate(encs)]
        steps = [model.train_step(inputs, np.array([0, 1, 0], np.int32), lr=[1e-3] * 5, weight_decay=[0.01] * 5,
                                  trainable=[True, i != 1, True], seed=i) for i in range(3)]
        out, alpha, _, _ = model.forward(inputs)
        if _C.build_info()["openmp_max_threads"] > 1:
            assert model.lm_schedule().startswith("side by side" if schedule == "side-by-side" else "one after")
        results.append((steps, out, alpha, [params(e._c) for e in encs], params(model)))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1:], results[1][1:]):
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_array_equal(x, y)


def test_lm_schedule_is_measured_then_kept(monkeypatch):
    """Without MULTIENC_LM_SCHEDULE the model times its first forwards both ways, then keeps one."""
    monkeypatch.delenv("MULTIENC_LM_SCHEDULE", raising=False)
    rng = np.random.default_rng(10)
    encs = encoders(["bert", "electra"])
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE["mean"], task=0, num_classes=2))
    init_head(model, rng)
    inputs = [batch(rng, e, 2, 5, "cls") for e in encs]
    if _C.build_info()["openmp_max_threads"] < 2:
        assert model.lm_schedule().startswith("one language model at a time")
        return
    assert model.lm_schedule() == "not measured yet"
    for _ in range(6):
        model.forward(inputs)
    decided = model.lm_schedule()
    assert decided in ("side by side (measured faster)", "one after another (measured faster)")
    for _ in range(3):
        model.forward(inputs)
    assert model.lm_schedule() == decided


def lm_dropout_seed(seed: int, i: int) -> int:
    """The dropout seed the task model gives LM i for a step seed (model.c's SplitMix64 mixing)."""
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    return mix(seed ^ mix(i + 1))


FAMILY_FIXTURES = sorted(n for n in os.listdir(FIX) if os.path.isfile(os.path.join(FIX, n, "config.json")))


def with_dropout(name: str) -> Encoder:
    """The tiny fixture model `name` with every dropout of its family switched on."""
    model_type = Encoder(os.path.join(FIX, name)).config["model_type"]
    if model_type == "modernbert":
        rates = {"mlp_dropout": 0.3, "attention_dropout": 0.2, "embedding_dropout": 0.1}
    else:
        rates = {hidden_dropout_key(model_type): 0.3,
                 "attention_dropout" if model_type == "distilbert" else "attention_probs_dropout_prob": 0.2}
    return Encoder(os.path.join(FIX, name), rates)


@pytest.mark.parametrize("name", FAMILY_FIXTURES)
@pytest.mark.parametrize("pooling", ["cls", "mean", "some real rows", "some rows"])
def test_layers_compute_only_the_rows_read_exactly(name, pooling):
    """A head that reads a few rows per sentence makes the LM's last layer compute only those
    (queries, attention output, residuals, LayerNorms, FFN; keys and values from every row), and
    when it reads real tokens only (CLS, the mean, some real rows), the embeddings and every layer
    before the last compute the real tokens alone, in the families with plain attention (BERT,
    RoBERTa, XLM-R, ELECTRA, DistilBERT, ALBERT) and MPNet's (its relative bias read at the rows'
    positions, its table's gradient from those rows; ModernBERT and DeBERTa pack every op but their
    windowed or disentangled attention, which runs on the padded layout; ModernBERT's last layer
    computes the attention of every row (windowed too: the "modernbert-biases" fixture's last layer
    is a local one) and the tail at the read rows, DeBERTa's the read rows' attention (the disentangled
    scores of every row, its query mask for a padding row read), tail and query gradient; DeBERTa-v2 with a
    ConvLayer prunes its last layer only; "some rows" reads padding rows too, so every layer but the last
    computes every row): in train
    mode, with dropout, for every family's tiny model, the logits and every encoder gradient equal
    the full encoder's (Encoder.forward / backward, which compute every row) read at those rows."""
    rng = np.random.default_rng(11)
    enc = with_dropout(name)
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=3))
    W = init_head(model, rng)
    # the first sentence longer than a window: the modernbert-biases fixture's last layer is local (8 each side)
    B, T = 4, 20
    ids, mask, _, pool = batch(rng, enc, B, T, "mean" if pooling == "mean" else "cls")
    if pooling in ("some rows", "some real rows"):  # K = 2 rows per sentence, each a mix of one or two positions
        pool = np.zeros((B, 2, T), np.float32)
        for b in range(B):
            n = int(mask[b].sum()) if pooling == "some real rows" else T
            for k in range(2):
                pool[b, k, rng.choice(n, min(1 + k, n), replace=False)] = rng.uniform(0.2, 1.0, min(1 + k, n))
        if pooling == "some rows":  # a padding row among them
            b = int(np.argmin(mask.sum(1)))
            pool[b, 1, T - 1] = 0.5
    K = pool.shape[1]
    targets = rng.integers(0, 3, B * K).astype(np.int32)
    # a step on other sentences first, so that every workspace buffer holds stale values
    model.forward([(batch(rng, enc, B, T, "cls")[0], np.ones((B, T), np.int32), None, np.ones((B, 1, T), np.float32))],
                  targets[:B], train=True, seed=5)
    model.backward([True])
    enc.zero_grad()
    out, _, loss, _ = model.forward([(ids, mask, None, pool)], targets, train=True, seed=21)
    model.backward([True])
    got = grads(enc._c)
    h = enc.forward(ids, mask, train=True, seed=lm_dropout_seed(21, 0)).astype(np.float64)
    pooled = np.einsum("bkt,bth->bkh", pool.astype(np.float64), h).reshape(B * K, -1)
    logits = pooled @ W["decoder.weight"].T + W["decoder.bias"]
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)
    z = np.exp(logits - logits.max(1, keepdims=True))
    dlogits = (z / z.sum(1, keepdims=True) - np.eye(3)[targets]) / (B * K)
    dh = np.einsum("bkt,bkh->bth", pool.astype(np.float64), (dlogits @ W["decoder.weight"]).reshape(B, K, -1))
    enc.zero_grad()
    enc.backward(dh.astype(np.float32))
    want = grads(enc._c)
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)


@pytest.mark.parametrize("name", FAMILY_FIXTURES)
def test_a_packed_prediction_equals_the_full_encoders(name):
    """A prediction (a forward without targets: the inference forward, whose layers reuse two
    layers' activations) of a head that reads real tokens only runs packed; its logits equal the
    full encoder's eval forward (Encoder.forward, every row; checked against HF elsewhere) read at
    those rows, for every family's tiny model, on a batch with padding and on one without."""
    rng = np.random.default_rng(12)
    enc = Encoder(os.path.join(FIX, name))
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=3))
    W = init_head(model, rng)
    for B, T in ((5, 11), (2, 6)):
        ids, mask, _, pool = batch(rng, enc, B, T, "mean")
        if B == 2:  # no padding
            ids, mask = rng.integers(3, 99, (B, T)).astype(np.int32), np.ones((B, T), np.int32)
            pool = np.full((B, 1, T), 1.0 / T, np.float32)
        out = model.forward([(ids, mask, None, pool)])[0]
        h = enc.forward(ids, mask).astype(np.float64)
        logits = np.einsum("bkt,bth->bkh", pool.astype(np.float64), h).reshape(B, -1) @ W["decoder.weight"].T
        np.testing.assert_allclose(out, logits + W["decoder.bias"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "distilbert", "albert"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "words"])
def test_pooled_head_matches_hf(family, pooling):
    """A classification head on CLS rows, on each sentence's mean, and on three first-subtoken rows
    per sentence (a word-level head), in training mode: the task model's last layer computes only
    the rows the pooling reads (all of them for the mean), and the logits, the loss and the gradient
    of every HF parameter and of the decoder equal HF transformers' (dropout off on both sides;
    tests/fixtures/models/<family>/pooled_heads.npz, made by tools/make_pooled_head_reference.py)."""
    ref = np.load(os.path.join(FIX, family, "pooled_heads.npz"))
    distil = family == "distilbert"
    enc = Encoder(os.path.join(FIX, family), {"dropout" if distil else "hidden_dropout_prob": 0.0,
                                              "attention_dropout" if distil else "attention_probs_dropout_prob": 0.0})
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=3))
    info = model.param_info()
    assert sorted(n for n, _, _ in info) == ["decoder.bias", "decoder.weight"]
    flat = np.zeros(model.num_floats, np.float32)
    for name, shape, off in info:
        flat[off:off + int(np.prod(shape))] = ref[f"{pooling}/{name}"].ravel()
    model.write_params(flat)
    ids, mask = ref["input_ids"].astype(np.int32), ref["attention_mask"].astype(np.int32)
    types = ref["token_type_ids"].astype(np.int32) if "token_type_ids" in ref else None
    out, _, loss, _ = model.forward([(ids, mask, types, ref[f"{pooling}/pool"])], ref[f"{pooling}/targets"],
                                    train=True, seed=3)
    np.testing.assert_allclose(out, ref[f"{pooling}/logits"], rtol=1e-4, atol=1e-5)
    assert abs(loss - float(ref[f"{pooling}/loss"])) <= 1e-5 * max(1.0, abs(float(ref[f"{pooling}/loss"])))
    enc.zero_grad()
    model.backward([True])
    got = dict(enc.gradients())
    head = grads(model)
    for name, shape, off in info:
        got[name] = head[off:off + int(np.prod(shape))].reshape(shape)
    prefix = f"{pooling}/grad/"
    assert set(got) == {k[len(prefix):] for k in ref.files if k.startswith(prefix)}
    scale = np.median([np.linalg.norm(ref[prefix + n]) for n in got])
    for name, g in got.items():
        r = ref[prefix + name]
        err = np.linalg.norm(g - r)
        if np.linalg.norm(r) > 1e-4 * scale:
            assert err <= 1e-4 * np.linalg.norm(r), (name, err / np.linalg.norm(r))
        else:  # analytically zero (the key bias; rows no pooled row depends on): float32 noise only
            assert err <= 1e-4 * scale, (name, err)


@pytest.mark.parametrize("name", FAMILY_FIXTURES)
def test_the_step_norm_is_the_norm_of_every_gradient(name):
    """The training step sums the gradients' squares during the backward (each layer weight set once
    complete, the embedding tables at the rows the batch used, the rest after): for every family's
    tiny model (ALBERT's shared sets, MPNet's bias table, DeBERTa's relative embeddings and
    convolution, DistilBERT's frozen positions, ModernBERT) the norm it returns is the norm of the
    gradients that model.backward computes for the same batch and seed, in float64."""
    rng = np.random.default_rng(12)
    enc = with_dropout(name)
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=3))
    init_head(model, rng)
    ids, mask, _, pool = batch(rng, enc, 3, 7, "cls")
    targets = np.array([0, 2, 1], np.int32)
    model.forward([(ids, mask, None, pool)], targets, train=True, seed=5)
    model.backward([True])
    total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in (grads(model), grads(enc._c))))
    _, norm = model.train_step([(ids, mask, None, pool)], targets, lr=[0.0] * 3, weight_decay=[0.0] * 3,
                               trainable=[True], seed=5)
    assert total > 0 and abs(norm - total) <= 1e-5 * total


def test_adamw_state_of_an_lm_with_frozen_positions():
    """DistilBERT's sinusoidal position table is frozen (past the floats AdamW updates): the LM's
    optimizer state still reads and writes as long as its whole buffer, the moments after one step
    are torch's (1 - beta1) g and (1 - beta2) g^2 on the trained floats and zero on the table."""
    rng = np.random.default_rng(13)
    enc = Encoder(os.path.join(FIX, "distilbert-sinusoidal"), {"dropout": 0.0, "attention_dropout": 0.0})
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=2))
    init_head(model, rng)
    inputs = [batch(rng, enc, 2, 6, "cls")]
    targets = np.array([1, 0], np.int32)
    model.forward(inputs, targets, train=True, seed=1)
    model.backward([True])
    g = grads(enc._c).astype(np.float64)
    model.train_step(inputs, targets, lr=[1e-3] * 3, weight_decay=[0.0] * 3, trainable=[True], seed=1,
                     max_grad_norm=0.0)
    n = enc._c.num_floats
    first, second = np.empty(n, np.float32), np.empty(n, np.float32)
    assert model.read_adamw(0, first, second) == 1
    frozen = dict((name, (off, int(np.prod(shape)))) for name, shape, off in enc._c.param_info())[
        "embeddings.position_embeddings.weight"]
    assert frozen[0] + frozen[1] == n and not g[frozen[0]:].any()
    np.testing.assert_allclose(first, 0.1 * g, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(second, 0.001 * g * g, rtol=1e-5, atol=1e-15)
    model.write_adamw(0, first, second, 1)


@pytest.mark.parametrize("name", ["deberta", "deberta-c2p", "deberta-abs"])
def test_deberta_v1_key_bias_slots_stay_zero(name):
    """DeBERTa (v1) has no key biases; the engine's v2 layout holds them as 0 (DebertaV1Names): their
    gradients are 0 after a backward (the c2p / p2c terms would give them one; without relative attention
    the softmax's rounding would), so the step's norm is
    the norm of DebertaModel's gradients (Encoder.gradients), and AdamW with weight decay leaves them 0."""
    rng = np.random.default_rng(14)
    enc = with_dropout(name)
    slots = [(off, int(np.prod(shape))) for n, shape, off in enc._c.param_info()
             if n.endswith(("attention.self.key_proj.bias", "attention.self.pos_key_proj.bias"))]
    assert len(slots) == (2 if name == "deberta-abs" else 4)  # two layers: the content key bias (and c2p's)
    model = _C.Model([enc._c], dict(combine=COMBINE["none"], task=0, num_classes=3))
    init_head(model, rng)
    inputs = [batch(rng, enc, 3, 9, "mean")]
    targets = np.array([0, 2, 1], np.int32)
    model.forward(inputs, targets, train=True, seed=5)
    model.backward([True])
    g = grads(enc._c)
    assert all(not g[off:off + n].any() for off, n in slots)
    hf = np.sqrt(sum((v.astype(np.float64) ** 2).sum() for v in enc.gradients().values()) +
                 (grads(model).astype(np.float64) ** 2).sum())
    for step in range(3):
        _, norm = model.train_step(inputs, targets, lr=[1e-2] * 3, weight_decay=[0.01] * 3, trainable=[True],
                                   seed=5)
        if step == 0:
            assert abs(norm - hf) <= 1e-5 * hf
    p = np.empty(enc._c.num_floats, np.float32)
    enc._c.read_params(p)
    assert all(not p[off:off + n].any() for off, n in slots)
