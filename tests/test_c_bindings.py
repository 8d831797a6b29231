"""The CPython binding layer (csrc/python/) on its own: objects that are used from several threads,
re-initialised, or given what a careless caller gives. Regression tests of issue 17's binding
defects; the thread-safety contract they check is in docs/ARCHITECTURE.md ("Threads")."""
import json
import os
import threading
import time

import numpy as np
import pytest

from multienc.engine import _C, _C_tests
import _c_engine as ce

SANITIZED = os.environ.get("MULTIENC_SANITIZED") == "1"


def test_encoder_backward_checks_the_last_forward_under_the_encoders_lock():
    """Issue 17 (1): backward compared the gradient with the last forward's shape before taking the
    lock, so a forward of another thread in between made it copy B*T*H floats out of a smaller
    array. Here a head's forward holds both LMs' locks while its slow first LM runs; meanwhile
    backward is asked for the second LM with a gradient of that LM's previous (small) forward. It
    must wait for the lock and then refuse: the last forward is now the head's, of another shape."""
    slow, small = ce.encoder(64, 4, seed=1), ce.encoder(32, 1, seed=2)
    head = ce.model([slow, small], "concat")
    rng = np.random.default_rng(0)
    B = 16
    inputs = ce.model_inputs(rng, 2, B, [512, 64])
    ids, mask = ce.lm_batch(rng, 1, 4)
    head.forward(inputs)  # warm-up; then one forward's time sets the waits below: fixed waits of 0.3 s
    started = time.monotonic()  # and more outlasted the whole forward on a Zen 4 (0.12 s)
    head.forward(inputs)
    took = time.monotonic() - started
    outcomes = []
    for wait in (0.3 * took, 0.5 * took, 0.5 * took, 0.5 * took, 0.5 * took):
        grad = small.forward(ids, mask)  # small's last forward: (1, 4, 32)
        finished = {}

        def head_forward():
            head.forward(inputs)
            finished["head"] = time.monotonic()

        t = threading.Thread(target=head_forward)
        t.start()
        time.sleep(wait)  # by now the head's forward holds both locks (its first LM takes most of it)
        error = None
        asked = time.monotonic()
        try:
            small.backward(np.ones_like(grad))
        except ValueError as e:
            error = str(e)
        t.join()
        # backward asked while the head's forward ran: the case the lock must order (when the two
        # threads are released together, either may return to Python first, so that is no sign)
        outcomes.append((asked < finished["head"], error))
        if outcomes[-1][0]:
            break
    overlapped, error = outcomes[-1]
    assert overlapped, f"backward never waited for the head's forward: {outcomes}"
    assert error is not None, "backward accepted a gradient of another forward's shape"
    assert f"last forward's output shape ({B}, 64, 32)" in error


def test_heads_listing_the_same_lms_in_opposite_orders_do_not_deadlock():
    """Issue 17 (2): each head took its LMs' locks in its own order, so two heads on (a, b) and
    (b, a) used from two threads blocked each other forever. Run in a subprocess: a regression is a
    timeout here, not a hung test session."""
    try:
        proc = ce.run_script("opposite_orders", 60, timeout=300 if SANITIZED else 60)
    except Exception as e:  # subprocess.TimeoutExpired: the threads are stuck
        pytest.fail(f"two heads on the same LMs in opposite orders deadlocked: {e}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result == {"done": [60, 60], "errors": []}


def test_a_live_encoder_refuses_a_second_init():
    """Issue 17 (3): __init__ on a live _C.Encoder freed its C encoder while a _C.Model built on it
    kept the pointer. Re-initialisation is refused, and the head keeps working on the same weights."""
    enc = ce.encoder(32, 1)
    head = ce.model([enc], "none")
    rng = np.random.default_rng(1)
    inputs = ce.model_inputs(rng, 1, 2, [6])
    before = head.forward(inputs)[0]
    with pytest.raises(RuntimeError, match="already initialised"):
        enc.__init__(ce.engine_config(48, 2))
    assert enc.num_floats == ce.encoder(32, 1).num_floats
    np.testing.assert_array_equal(head.forward(inputs)[0], before)


def test_a_live_model_refuses_a_second_init():
    """The same for _C.Model, whose compute may run on another thread while __init__ frees it."""
    enc = ce.encoder(32, 1)
    head = ce.model([enc], "none")
    with pytest.raises(RuntimeError, match="already initialised"):
        head.__init__([enc], {"combine": 0, "task": 0, "num_classes": 3})
    assert head.forward(ce.model_inputs(np.random.default_rng(2), 1, 2, [5]))[0].shape == (2, 2)


def test_a_model_refuses_the_same_encoder_twice():
    """A head listing one encoder twice would take that encoder's lock twice (a deadlock on the
    first call) and run two forwards into one workspace; it is refused when built."""
    enc = ce.encoder(32, 1)
    with pytest.raises(ValueError, match=r"encoders\[1\] is encoders\[0\]"):
        _C.Model([enc, enc], {"combine": 1, "task": 0, "num_classes": 2})


def test_head_backward_refuses_when_its_lm_last_ran_another_shape():
    """A head's backward reads each trainable LM's last forward. When the LM ran another forward in
    between (another head, or Encoder.forward, on any thread), of another shape, backward used to
    read the head's pool weights and the LM's buffers with mismatched lengths; it refuses."""
    enc = ce.encoder(32, 1)
    head = ce.model([enc], "none")
    rng = np.random.default_rng(3)
    inputs = ce.model_inputs(rng, 1, 2, [8])
    head.forward(inputs, ce.targets(rng, ce.CLASSIFY, 2, 2))
    enc.forward(*ce.lm_batch(rng, 4, 16))
    with pytest.raises(RuntimeError, match="language model 1's last forward is not this model's"):
        head.backward([True])
    head.forward(inputs, ce.targets(rng, ce.CLASSIFY, 2, 2))
    head.backward([False])  # a frozen LM needs no activations
    head.backward([True])


def test_a_prediction_keeps_no_activations_and_head_backward_refuses_after_one():
    """A head's forward without targets (a prediction) runs its LMs' inference forward: the
    same outputs as with targets, in less memory, and no activations for a backward, so a
    backward of another head's forward on that LM (same shape) is refused after it instead of
    reading overwritten buffers."""
    enc = ce.encoder(32, 6)
    head, other = ce.model([enc], "none", seed=1), ce.model([enc], "none", seed=2)
    rng = np.random.default_rng(4)
    inputs = ce.model_inputs(rng, 1, 3, [12])
    predicted = head.forward(inputs)
    predicted_ws = enc.workspace_bytes
    with_targets = head.forward(inputs, ce.targets(rng, ce.CLASSIFY, 3, 2))
    np.testing.assert_array_equal(predicted[0], with_targets[0])
    np.testing.assert_array_equal(predicted[1], with_targets[1])
    assert predicted_ws < 0.5 * enc.workspace_bytes, (predicted_ws, enc.workspace_bytes)
    other.forward(inputs)
    with pytest.raises(RuntimeError, match="language model 1's last forward is not this model's"):
        head.backward([True])
    with pytest.raises(RuntimeError, match="after an inference forward"):
        enc.backward(np.zeros((3, 12, 32), np.float32))
    head.forward(inputs, ce.targets(rng, ce.CLASSIFY, 3, 2))
    head.backward([True])


def test_a_staged_lm_backward_refuses_when_its_lm_ran_another_forward_since():
    """forward_backward and backward_lm are two locked calls: an encoder forward of another shape,
    or a prediction, on the LM in between left backward_lm pooling the head's gradient into a
    gradient buffer too small for it, or absent; it refuses."""
    enc = ce.encoder(32, 2)
    head = ce.model([enc], "none")
    rng = np.random.default_rng(5)
    inputs = ce.model_inputs(rng, 1, 2, [8])
    for between in (lambda: enc.forward(*ce.lm_batch(rng, 4, 16)),
                    lambda: enc.forward(*ce.lm_batch(rng, 2, 8), inference=True)):
        head.forward_backward(inputs, ce.targets(rng, ce.CLASSIFY, 2, 2), [True])
        between()
        with pytest.raises(RuntimeError, match="language model 1's last forward is not this model's"):
            head.backward_lm(0)
    head.forward_backward(inputs, ce.targets(rng, ce.CLASSIFY, 2, 2), [True])
    head.backward_lm(0)


def test_config_values_outside_the_c_int_range_are_refused():
    """One config reader for the engine and the head: an integer that does not fit the C field is a
    ValueError (the head's reader used to truncate 2**32 classes to 0, a model without decoder)."""
    enc = ce.encoder(32, 1)
    with pytest.raises(ValueError, match="'num_classes' = 4294967296 is out of range"):
        _C.Model([enc], {"combine": 0, "task": 0, "num_classes": 2 ** 32})
    with pytest.raises(ValueError, match="'hidden_size' = -4294967296 is out of range"):
        _C.Encoder({**ce.engine_config(), "hidden_size": -2 ** 32})
    with pytest.raises(KeyError, match="'vocab_size' is missing from the engine config"):
        _C.Encoder({k: v for k, v in ce.engine_config().items() if k != "vocab_size"})


def wordpiece(vocab):
    """A _C.Tokenizer: BERT normalizer (clean text, lowercase) and pre-tokenizer, WordPiece, no
    template (what multienc.engine.tokenization builds from a vocab.txt, minus the special tokens)."""
    opts = {"model": 1, "bert_normalizer": 1, "clean_text": 1, "handle_chinese_chars": 1, "strip_accents": 1,
            "lowercase": 1, "pre_tokenizer": 1, "add_prefix_space": 0, "use_regex": 0, "post": 0,
            "trim_offsets": 0, "post_add_prefix_space": 0, "unk_id": 0, "max_input_chars_per_word": 100}
    return _C.Tokenizer(opts, [(t, i) for i, t in enumerate(vocab)], [], [], [], [])


def test_a_batch_item_without_tokens():
    """Issue 17 (5): an item that normalizes to nothing (a private-use character, dropped by
    clean_text) gave memcpy(NULL, NULL, 0) when its encoding was appended (UBSan; this test runs
    under `make sanitize`). It encodes to no tokens, beside items that have some."""
    tok = wordpiece(["[UNK]", "a", "b"])
    out = tok.encode_batch(["\U000fbd2b"], False, -1, 0, 0, 1)
    assert out["input_ids"].shape == (1, 0)
    out = tok.encode_batch(["\U000fbd2b", "a b", "\U000fbd2b"], False, -1, 0, 0, 2)
    np.testing.assert_array_equal(out["input_ids"], [[0, 0], [1, 2], [0, 0]])
    np.testing.assert_array_equal(out["attention_mask"], [[0, 0], [1, 1], [0, 0]])


def test_the_op_test_entry_points_are_a_separate_extension():
    """Issue 13: the op entry points live in multienc.engine._C_tests (built for the tests, never in a
    wheel: tests/test_wheel.py), not in the shipped multienc.engine._C."""
    assert not [name for name in dir(_C) if name.startswith("ops_")]
    ops = [name for name in dir(_C_tests) if name.startswith("ops_")]
    assert len(ops) == 53 and "ops_crf" in ops and "ops_gemm_bf16" in ops and "ops_adamw" in ops and "ops_window_attention_backward" in ops
    assert _C_tests.ops_embedding_backward.__doc__.startswith(
        "ops_embedding_backward(dout, ids, V, padding_idx[, device]) -> dtable")


def test_a_failed_allocation_names_a_device_fault_recorded_before_it():
    """A device fault (a CUDA kernel's illegal access) fails every later allocation; the error must name
    that fault, not claim the memory ran out (seen on an H200 under compute-sanitizer)."""
    with pytest.raises(MemoryError, match="^out of memory allocating 7 parameters$"):
        _C_tests.alloc_failed(False)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _C_tests.alloc_failed(True)


def test_the_op_driver_checks_every_argument_the_same_way():
    """One driver parses every op: argument counts, array ranks, scalar types, the device."""
    a = np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"ops_add_forward\(\) takes 2 or, with a device, one more positional "
                                        r"arguments, got 1"):
        _C_tests.ops_add_forward(a)
    with pytest.raises(TypeError, match=r"ops_rng_uniform\(\) takes 3 positional arguments, got 4"):
        _C_tests.ops_rng_uniform(1, 2, 3, "cpu")
    with pytest.raises(ValueError, match="b: expected a 1-d float array"):
        _C_tests.ops_add_forward(a, np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="ids: expected a 1-d int array"):
        _C_tests.ops_embedding_forward("x", np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match="integer"):
        _C_tests.ops_gelu_forward(a, 0.5, True, True)
    with pytest.raises(TypeError, match="device must be a str or None"):
        _C_tests.ops_add_forward(a, a, 0)
    with pytest.raises(ValueError, match="1..16 inputs"):
        _C_tests.ops_concat_forward([])
    # in/out arguments are copies: the caller's arrays are not changed
    da0, db0 = np.zeros(3, np.float32), np.ones(3, np.float32)
    da, db = _C_tests.ops_add_backward(a * 2, da0, db0, True)
    np.testing.assert_array_equal(da, [2, 2, 2])
    np.testing.assert_array_equal(db, [3, 3, 3])
    assert not da0.any() and (db0 == 1).all()
    dx, dscores = _C_tests.ops_combine_backward(np.ones((2, 3), np.float32), np.ones((2, 2, 3), np.float32),
                                                np.full((2, 2), 0.5, np.float32), False)
    assert dscores is None
    np.testing.assert_array_equal(dx, np.full((2, 2, 3), 0.5))


def op_samples(rng):
    """Valid arguments for every op that takes a device."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    ids = np.array([3, 0, 7, 3, 1], np.int32)
    B, T, NH, HS = 2, 5, 2, 3
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
    qkv = f(B, T, 3 * NH * HS)
    _, probs = _C_tests.ops_attention_forward(qkv, mask, NH, 0.1, 5, 9)
    x = f(6, 4)
    out, mean, rstd = _C_tests.ops_layernorm_forward(x, f(4), f(4), 1e-5)
    kv = np.ascontiguousarray(qkv[..., NH * HS:])
    qstart, qpos = np.array([0, 1, 3], np.int32), np.array([0, 1, 4], np.int32)  # query rows: (0, 0), (1, 1), (1, 4)
    q = f(3, NH * HS)
    _, rprobs = _C_tests.ops_attention_rows_forward(q, kv, mask, None, qstart, qpos, NH, 0.5, False, 0.1, 5, 9)
    rel_rows = np.array([0, 5, 2, 3, 1, 4, 5, 0, 2], np.int32)  # rows of 6 for the 2T - 1 relative positions
    em, tags, lengths = f(2, 4, 3), np.array([[0, 2, 1, 0], [1, 1, 0, 0]], np.int32), np.array([4, 2], np.int32)
    qkv4 = f(B, T, 3 * NH * 4)
    cos, sin = _C_tests.ops_rope_tables(T, 4, 100.0)
    _, stats = _C_tests.ops_window_attention_forward(qkv4, mask, NH, 1, 0.1, 5, 9)
    return {
        "embedding_forward": (ids, f(8, 4)),
        "embedding_backward": (f(5, 4), ids, 8, 3),
        "layernorm_forward": (x, f(4), f(4), 1e-5),
        "layernorm_backward": (f(6, 4), x, mean, rstd, f(4)),
        "matmul_forward": (x, f(3, 4), f(3)),
        "matmul_backward": (f(6, 3), x, f(3, 4)),
        "gelu_forward": (f(9), 1, True, True),
        "gelu_backward": (f(9), f(9)),
        "add_forward": (f(7), f(7)),
        "add_backward": (f(7), f(7), f(7), True),
        "dropout_forward": (f(50), 0.3, 11, 2),
        "dropout_backward": (f(50), 0.3, 11, 2),
        "attention_forward": (qkv, mask, NH, 0.1, 5, 9),
        "attention_backward": (f(B, T, NH * HS), qkv, probs, mask, NH, 0.1, 5, 9),
        "attention_rows_forward": (q, kv, mask, f(1, NH, T, T), qstart, qpos, NH, 0.5, False, 0.1, 5, 9),
        "attention_rows_backward": (f(3, NH * HS), q, kv, rprobs, mask, qstart, qpos, NH, 0.5, False, 0.1, 5,
                                    9),
        "dropout_rows": (f(3, 6), np.array([4, 0, 9], np.int32), 0.3, 11, 2, False),
        "rope_forward": (qkv4, cos, sin, NH),
        "rope_backward": (qkv4, cos, sin, NH),
        "glu_forward": (f(6, 8), 0),
        "glu_backward": (f(6, 8), f(6, 4), 1),
        "window_attention_forward": (qkv4, mask, NH, 1, 0.1, 5, 9),
        "window_attention_backward": (f(B, T, NH * 4), qkv4, stats, mask, NH, 1, 0.1, 5, 9),
        "attention_bias_forward": (qkv, mask, f(B, NH, T, T), NH, 0.4, True, 0.1, 5, 9),
        "attention_bias_backward": (f(B, T, NH * HS), qkv, probs, mask, NH, 0.4, True, 0.1, 5, 9),
        "relbias_forward": (f(6, NH), rel_rows),
        "relbias_backward": (f(B, NH, T, T), rel_rows, 6),
        "disentangled_forward": (qkv, f(6, NH * HS), f(6, NH * HS), rel_rows, NH, 0.4),
        "disentangled_backward": (f(B, NH, T, T), qkv, f(6, NH * HS), None, rel_rows, NH, 0.4),
        "conv1d_forward": (f(B, T, 4), f(4, 2, 3), f(4), 2),
        "conv1d_backward": (f(B, T, 4), f(B, T, 4), f(4, 2, 3), 2),
        "mask_rows_forward": (x, np.array([1, 0, 1, 1, 0, 1], np.int32)),
        "mask_rows_backward": (x, np.array([0, 0, 1, 1, 0, 1], np.int32)),
        "pool_forward": (f(2, 5, 4), f(2, 3, 5)),
        "pool_backward": (f(2, 3, 4), f(2, 3, 5)),
        "concat_forward": ([f(3, 2), f(3, 5), f(3, 1)],),
        "concat_backward": (f(3, 8), 2, 5),
        "combine_forward": (f(3, 4, 5), f(3, 4)),
        "combine_backward": (f(4, 5), f(3, 4, 5), np.full((3, 4), 1 / 3, np.float32), True),
        "cross_entropy": (f(4, 3), np.array([2, -1, 0, 1], np.int32)),
        "mse": (f(4, 2), f(4, 2)),
        "crf": (em, tags, lengths, f(3, 3), f(3), f(3)),
        "crf_viterbi": (em, lengths, f(3, 3), f(3), f(3)),
        "sum_squares": (f(33),),
        "scale": (f(33), 0.5),
        "sum_squares_rows": (f(8, 3), np.array([5, 0, 2], np.int32)),
        "adamw": (f(10), f(10), f(10), np.abs(f(10)), 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, 0.5),
    }


def flat(result):
    return [result] if not isinstance(result, tuple) else list(result)


def test_every_op_gives_the_same_bits_through_the_device_path():
    """The driver's device path (a buffer per array, copies in, results and in/out arguments copied
    back, scratch on the backend) on the CPU backend ("cpu:staged", a device only _C_tests knows)
    against the direct path, for every op that takes a device: a staging mistake (a missing copy,
    a wrong size) shows here (and under ASan in `make sanitize`) without a GPU."""
    samples = op_samples(np.random.default_rng(4))
    with_device = sorted(n[4:] for n in dir(_C_tests) if n.startswith("ops_") and "[, device]" in
                         getattr(_C_tests, n).__doc__)
    assert sorted(samples) == with_device
    for name, args in samples.items():
        op = getattr(_C_tests, "ops_" + name)
        direct, staged = flat(op(*args, "cpu")), flat(op(*args, "cpu:staged"))
        assert len(direct) == len(staged), name
        for a, b in zip(direct, staged):
            assert type(a) is type(b), name
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert any(np.any(np.asarray(a) != 0) for a in direct), f"{name} computed nothing"


def test_write_params_at_an_offset_writes_that_slice_only():
    """Encoder.write_params(array, offset) writes the array's floats from offset on (loading copies
    a model one tensor at a time so), and refuses a slice that does not fit, before writing."""
    enc = ce.encoder(32, 1)
    n = enc.num_floats
    before = np.empty(n, np.float32)
    enc.read_params(before)
    enc.write_params(np.full(7, 3.0, np.float32), n - 7)
    enc.write_params(np.full(5, -1.0, np.float32), 0)
    after = np.empty(n, np.float32)
    enc.read_params(after)
    np.testing.assert_array_equal(after[:5], -1.0)
    np.testing.assert_array_equal(after[n - 7:], 3.0)
    np.testing.assert_array_equal(after[5:n - 7], before[5:n - 7])
    for arr, offset, match in ((np.ones(8, np.float32), n - 7, "overrun"), (np.ones(1, np.float32), -1, "outside"),
                               (np.ones(1, np.float32), n + 1, "outside"), (np.ones(3), 0, "float32"),
                               (np.ones((2, 2), np.float32), 0, "contiguous")):
        with pytest.raises(ValueError, match=match):
            enc.write_params(arr, offset)
    with pytest.raises(TypeError):
        enc.write_params(np.ones(1, np.float32), "0")
    enc.read_params(before)
    np.testing.assert_array_equal(before, after)
