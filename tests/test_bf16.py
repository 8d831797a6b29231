"""precision="bf16": the linear layers of every encoder family and of the head with bfloat16 inputs
and float32 accumulation, against transformers with the same semantics (tools/make_bf16_reference.py
writes reference_bf16.npz beside each fixture's reference.npz); the trainer's precision argument;
the clear errors where bf16 does not run. The GEMM kernel itself: tests/test_gemm_bf16.py."""
import os
import subprocess
import sys

import numpy as np
import pytest

from multienc.datasets import Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine import _C, bf16_available, check_precision
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer

from _hf_fixtures import FIXTURES, cases, load
from _toy_tasks import BAD, GOOD, classification_corpus

FAMILIES = ("bert", "roberta", "electra", "albert", "distilbert", "mpnet", "deberta-v3", "deberta-v2-conv",
            "modernbert")
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")
needs_bf16 = pytest.mark.skipif(not bf16_available(), reason="this CPU has no AVX512-BF16 (precision='bf16' "
                                                                "raises NotImplementedError here; tested below)")


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="no /proc/cpuinfo to compare with (not Linux)")
def test_bf16_availability_follows_the_cpu_flags():
    flags = cpu_flags()
    assert bf16_available() == ({"avx512_bf16", "avx512bw", "avx512f", "avx512vl"} <= flags)


def rel(a, r):
    return float(np.linalg.norm(a - r) / np.linalg.norm(r))


def flat(source, names, prefix=""):
    """Every named gradient of a dict or an npz (keys ``prefix + name``) as one vector."""
    return np.concatenate([source[prefix + n].ravel() for n in names])


@needs_bf16
@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_forward_and_gradients_match_transformers_with_bf16_linear_layers(family):
    """Where no activation lands on the other side of a bf16 rounding boundary than in transformers,
    the two agree to float32 reassociation (about 1e-7); a value rounded the other way (the float32
    activations differ in their last bits, and the sums' order decides which cases that hits) moves
    the rest of that case by up to a few 1e-4. Either way the engine is far nearer the bf16
    reference than its own fp32 output is (1e-3 away in the forward, 2e-3 in the gradients): the
    bf16 table is what runs, in every linear layer, forward and backward. The rounding itself is
    tested exactly in tests/test_gemm_bf16.py."""
    enc, ref = load(family)
    bf = np.load(os.path.join(FIXTURES, family, "reference_bf16.npz"))
    try:
        for c, inputs in cases(ref):
            enc.set_precision("fp32")
            h32 = enc.forward(**inputs)
            enc.set_precision("bf16")
            assert enc.precision == "bf16"
            enc.zero_grad()
            h = enc.forward(**inputs)
            grads = enc.backward(ref[f"case{c}/R"])
            names = sorted(grads)
            want, g_want = bf[f"case{c}/last_hidden_state"], flat(bf, names, f"case{c}/grad/")
            fwd, bwd = rel(h, want), rel(flat(grads, names), g_want)
            fwd32, bwd32 = rel(h32, want), rel(flat(ref, names, f"case{c}/grad/"), g_want)
            assert fwd <= 1e-3 and bwd <= 2e-3, (c, fwd, bwd)
            assert fwd <= 0.5 * fwd32 and bwd <= 0.5 * bwd32, (c, fwd, fwd32, bwd, bwd32)
    finally:
        enc.set_precision("fp32")


@needs_bf16
def test_precision_switches_back_to_identical_fp32_results():
    enc, ref = load("bert")
    inputs = next(cases(ref))[1]
    before = enc.forward(**inputs)
    enc.set_precision("bf16")
    assert not np.array_equal(enc.forward(**inputs), before)
    enc.set_precision("fp32")
    assert enc.precision == "fp32"
    np.testing.assert_array_equal(enc.forward(**inputs), before)


def test_precision_names_are_checked():
    enc, _ = load("bert")
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'.*'fp16'"):
        enc.set_precision("fp16")
    with pytest.raises(TypeError, match="precision must be a str"):
        enc.set_precision(16)
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'float16'"):
        check_precision("float16", "cpu")
    with pytest.raises(NotImplementedError, match="CPU only, not on 'cuda' yet; use precision='fp32', or create the "
                                                  "language models with device='cpu'"):
        check_precision("bf16", "cuda")
    assert enc.precision == "fp32"


WITHOUT_BF16 = """
import sys
import pytest
sys.path.insert(0, {tests!r})
from multienc.engine import _C, bf16_available
from multienc.encoders import LanguageModel
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer
from _hf_fixtures import load
from _toy_tasks import classification_corpus
assert not _C.cpu_has_bf16() and not bf16_available()
enc, _ = load("bert")
with pytest.raises(NotImplementedError, match="needs a CPU with AVX512-BF16.*use precision='fp32'"):
    enc.set_precision("bf16")
clf = TextClassifier(LanguageModel({electra!r}), 2)
with pytest.raises(NotImplementedError, match="needs a CPU with AVX512-BF16"):
    ModelTrainer(clf, classification_corpus()).train(epochs=1, base_path={base!r}, progress=False, precision="bf16")
assert enc.precision == "fp32" and clf.task_model.precision == "fp32"
print("ok")
"""


def test_a_cpu_without_bf16_gets_a_clear_error(tmp_path):
    """MULTIENC_CPU_LEVEL=1 (AVX2 at most) stands for a CPU without AVX512-BF16."""
    script = WITHOUT_BF16.format(tests=os.path.dirname(__file__), electra=ELECTRA, base=str(tmp_path))
    env = {**os.environ, "MULTIENC_CPU_LEVEL": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_a_bad_cpu_level_is_a_clear_error():
    env = {**os.environ, "MULTIENC_CPU_LEVEL": "avx2"}
    run = subprocess.run([sys.executable, "-c", "import multienc.engine"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    assert "ValueError: MULTIENC_CPU_LEVEL must be 0 (baseline x86-64), 1 (AVX2 + FMA) or 2" in run.stderr
    assert "got 'avx2'" in run.stderr


@needs_bf16
def test_trainer_trains_in_bf16_and_hands_back_an_fp32_model(tmp_path):
    corpus = classification_corpus()
    runs = {}
    for precision in ("fp32", "bf16"):
        clf = TextClassifier(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ROBERTA)], combine_method="dme"), 2)
        hist = ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=12, shuffle_data=True,
                                               seed=1, base_path=str(tmp_path / precision), progress=False,
                                               precision=precision)
        assert clf.task_model.precision == "fp32"
        assert all(lm.encoder.precision == "fp32" for lm in clf.language_models)
        log = (tmp_path / precision / "training.log").read_text()
        assert f"device: cpu, precision: {precision}" in log
        runs[precision] = hist["train_loss"], clf.predict(GOOD + BAD)
    (loss32, pred32), (loss16, pred16) = runs["fp32"], runs["bf16"]
    assert loss16 != loss32, "bf16 must change the arithmetic"
    np.testing.assert_allclose(loss16[0], loss32[0], rtol=2e-2)  # the first epoch, before the runs drift apart
    assert loss16[-1] < loss16[0]
    labels = np.array([1] * len(GOOD) + [0] * len(BAD))
    assert (pred32 == labels).all() and (pred16 == labels).all()


def test_unknown_precision_is_rejected_before_training(tmp_path):
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'half'"):
        ModelTrainer(clf, classification_corpus()).train(epochs=1, base_path=str(tmp_path), progress=False,
                                                         precision="half")
    assert not os.path.exists(tmp_path / "training.log")


def test_training_checkpoints_record_the_precision():
    from multienc.formats.checkpoint import CheckpointError
    from multienc.training.settings import TrainSettings
    s = TrainSettings.from_arguments(2, 2e-5, None, 16, 1, False, 0, "run", True, False, 0.1, 0.01, 1, False, 5.0,
                                     32, False, precision="fp32")
    saved = s.to_json()
    assert saved["precision"] == "fp32"
    assert TrainSettings.from_json({**saved, "precision": "bf16"}, "ckpt").precision == "bf16"
    older = {k: v for k, v in saved.items() if k != "precision"}  # written before precision existed
    assert TrainSettings.from_json(older, "ckpt").precision == "fp32"
    with pytest.raises(CheckpointError, match="training_state.settings.precision"):
        TrainSettings.from_json({**saved, "precision": "fp16"}, "ckpt")
