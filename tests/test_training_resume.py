"""Resuming an interrupted training run (issue 17): ``train(..., checkpoint_every=N)`` and
``ModelTrainer.resume``. A run killed with SIGKILL at a random step, or stopped with Ctrl-C, and then
resumed ends with bitwise the same weights and the same ``loss.tsv`` (TIMESTAMP aside) as a run
that was never interrupted, for a DME classifier and a CRF tagger over two language models.

The runs are child processes (``tests/_resume_child.py``) on the same thread count; the kill step
is drawn at random and printed in every assertion message, so a failure can be replayed.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from test_api import ELECTRA, ROBERTA, classification_corpus

from multienc.datasets import Corpus, Sentence
from multienc.formats.checkpoint import CheckpointError
from multienc.models import LanguageModel, MultiEncoder, TextClassifier
from multienc.trainer import ModelTrainer

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_resume_child.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def _run(kind, base, *extra, stop_at=None, how=signal.SIGKILL, delay=0.0):
    """Run the child, answering each ``step N`` it prints; with ``stop_at``, send ``how`` once it has
    printed ``step stop_at``, ``delay`` seconds after the answer (so that the signal may land inside
    that step's checkpoint write; the child waits at its next ``step`` line, so a kill always lands
    before the run ends). Returns (rc, output)."""
    proc = subprocess.Popen([sys.executable, CHILD, kind, str(base), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith("step "):
            continue
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        except BrokenPipeError:  # the child is gone (its output says why)
            pass
        if stop_at is not None and line.strip() == f"step {stop_at}":
            time.sleep(delay)
            proc.send_signal(how)
            stop_at = None
    proc.wait(timeout=600)
    return proc.returncode, "".join(lines)


def _loss_rows(base):
    """loss.tsv without its TIMESTAMP column (wall-clock times differ between any two runs)."""
    rows = open(os.path.join(base, "loss.tsv"), encoding="utf-8").read().splitlines()
    return [r.split("\t")[:1] + r.split("\t")[2:] for r in rows]


def _assert_same_run(ref, other, why):
    a, b = np.load(os.path.join(ref, "final.npz")), np.load(os.path.join(other, "final.npz"))
    assert sorted(a.files) == sorted(b.files), why
    for name in a.files:
        assert a[name].tobytes() == b[name].tobytes(), f"{why}: weight {name} differs"
    assert _loss_rows(ref) == _loss_rows(other), why
    assert len(_loss_rows(ref)) == 4  # header + 3 epochs


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """An uninterrupted run of each kind (writing a checkpoint every step, as the killed runs do)."""
    out = {}
    for kind in ("classifier", "tagger"):
        base = tmp_path_factory.mktemp(f"ref-{kind}")
        rc, output = _run(kind, base)
        assert rc == 0, output[-3000:]
        out[kind] = (base, output.count("\nstep ") + output.startswith("step "))
    return out


@pytest.mark.slow  # child processes; the sanitizer pass covers the same C calls in the tests below
@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_sigkill_at_a_random_step_then_resume_gives_the_same_run(tmp_path, references, kind):
    ref, steps = references[kind]
    rnd = random.Random()
    kills = sorted(rnd.sample(range(2, steps), 2))
    delays = [rnd.choice([0.0, 0.0, 0.005, 0.02, 0.05]) for _ in kills]
    why = f"{kind}: SIGKILL after steps {kills} (delays {delays}) of {steps}"
    rc, output = _run(kind, tmp_path, stop_at=kills[0], delay=delays[0])
    assert rc == -signal.SIGKILL, f"{why}: {output[-2000:]}"
    rc, output = _run(kind, tmp_path, "--resume", stop_at=kills[1], delay=delays[1])
    assert rc == -signal.SIGKILL, f"{why}: {output[-2000:]}"
    rc, output = _run(kind, tmp_path, "--resume")
    assert rc == 0, f"{why}: {output[-3000:]}"
    _assert_same_run(ref, tmp_path, why)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], why
    assert not os.path.exists(tmp_path / "training-checkpoint.pt"), "a finished run leaves nothing to resume"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_ctrl_c_stops_after_the_step_with_a_resumable_checkpoint(tmp_path, references, kind):
    ref, steps = references[kind]
    stop = random.Random().randrange(1, steps)
    why = f"{kind}: SIGINT after step {stop} of {steps}"
    rc, output = _run(kind, tmp_path, "--checkpoint-every", "0", stop_at=stop, how=signal.SIGINT)
    assert rc != 0 and "KeyboardInterrupt" in output and "resume" in output, f"{why}: {output[-2000:]}"
    # the child may have run ahead of the parent's signal, but once the handler has run (it logs the
    # line below) at most the step then in progress completes before the checkpoint and the stop
    assert "Ctrl-C: stopping after the current step" in output, f"{why}: {output[-2000:]}"
    after = output.split("Ctrl-C: stopping after the current step", 1)[1]
    assert after.count("\nstep ") <= 1, f"{why}: {after[-2000:]}"
    assert os.path.exists(tmp_path / "training-checkpoint.pt"), why
    rc, output = _run(kind, tmp_path, "--resume")
    assert rc == 0, f"{why}: {output[-3000:]}"
    _assert_same_run(ref, tmp_path, why)


def test_resume_refuses_another_corpus_or_model_and_needs_a_checkpoint(tmp_path):
    corpus = classification_corpus()
    lm = LanguageModel(ELECTRA)
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        ModelTrainer(TextClassifier(lm, 2), corpus).resume(str(tmp_path))
    clf = TextClassifier(lm, 2)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after_first_step(clf, corpus, tmp_path)
    other = Corpus(corpus.name, corpus.task_type, corpus.train[:-1], corpus.dev, label_map=corpus.label_map,
                   evaluation_metric=corpus.evaluation_metric)
    with pytest.raises(ValueError, match="other data"):
        ModelTrainer(TextClassifier(lm, 2), other).resume(str(tmp_path))
    two = TextClassifier(MultiEncoder([lm, LanguageModel(ROBERTA)], combine_method="mean"), 2)
    with pytest.raises(ValueError, match="another model"):
        ModelTrainer(two, corpus).resume(str(tmp_path))
    # a damaged training state is a CheckpointError naming the field
    from multienc.formats.checkpoint import read_checkpoint, write_checkpoint
    meta, tensors = read_checkpoint(str(tmp_path / "training-checkpoint.pt"))
    meta = {k: v for k, v in meta.items() if k != "multienc_checkpoint"}
    meta["training_state"] = meta["training_state"].replace('"batch": 1', '"batch": -1')
    write_checkpoint(str(tmp_path / "training-checkpoint.pt"), tensors, meta)
    with pytest.raises(CheckpointError, match=r"training_state.position.batch"):
        ModelTrainer(TextClassifier(lm, 2), corpus).resume(str(tmp_path))


def _interrupt_after_first_step(model, corpus, base):
    """Train with a SIGINT delivered during the first step (as Ctrl-C would be)."""
    step = model.train_step

    def interrupted(*a, **kw):
        out = step(*a, **kw)
        if model.steps_trained == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    model.train_step = interrupted
    ModelTrainer(model, corpus).train(learning_rate=1e-3, batch_size=4, epochs=2, base_path=str(base),
                                      progress=False, seed=1)


def test_adamw_state_round_trips_and_a_restored_step_is_bitwise_equal():
    corpus = classification_corpus()
    batch = [Sentence(s.text, s.label) for s in corpus.train[:4]]

    def fresh():
        m = TextClassifier(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ROBERTA)], combine_method="dme"), 2)
        m.reset_head(np.random.default_rng(5))
        return m

    def step(m, i):
        m.train_step(batch, [1e-3, 2e-3, 3e-3, 3e-3], [0.01] * 4, [True, i % 2 == 0], seed=i, max_grad_norm=1.0)

    a = fresh()
    for i in range(3):
        step(a, i)
    weights, adamw = a.state_dict(), a.task_model.adamw_state()
    assert [s for s, _, _ in adamw] == [3, 3, 2]  # the head, LM 1 every step, LM 2 on steps 0 and 2
    step(a, 3)
    b = fresh()
    b.load_state_dict(weights)
    b.task_model.load_adamw_state(adamw)
    again = b.task_model.adamw_state()
    for (s1, m1, v1), (s2, m2, v2) in zip(adamw, again):
        assert s1 == s2 and m1.tobytes() == m2.tobytes() and v1.tobytes() == v2.tobytes()
    step(b, 3)
    for name, w in a.state_dict().items():
        assert w.tobytes() == b.state_dict()[name].tobytes(), name
    with pytest.raises(ValueError, match="floats"):
        b.task_model.load_adamw_state([(1, np.zeros(3), np.zeros(3))] + again[1:])


def test_ctrl_c_during_the_dev_evaluation_resumes_at_the_next_epoch(tmp_path):
    """Ctrl-C during an epoch's dev evaluation checkpoints after it, at the start of the next
    epoch: a position with no RNG state inside an epoch. Resume used to refuse that checkpoint
    (``training_state.position.rng`` null; found by the SIGINT test above)."""
    corpus = classification_corpus()
    settings = dict(learning_rate=1e-3, batch_size=4, epochs=2, progress=False, seed=1)
    reference = TextClassifier(LanguageModel(ELECTRA), 2)
    ModelTrainer(reference, corpus).train(base_path=str(tmp_path / "reference"), **settings)
    model = TextClassifier(LanguageModel(ELECTRA), 2)
    evaluate = model.evaluate_batch

    def interrupted(*a, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*a, **kw)

    model.evaluate_batch = interrupted
    with pytest.raises(KeyboardInterrupt):
        ModelTrainer(model, corpus).train(base_path=str(tmp_path / "run"), **settings)
    resumed = TextClassifier(LanguageModel(ELECTRA), 2)
    ModelTrainer(resumed, corpus).resume(str(tmp_path / "run"))
    weights = resumed.state_dict()
    for name, value in reference.state_dict().items():
        assert weights[name].tobytes() == value.tobytes(), name
    assert _loss_rows(tmp_path / "reference") == _loss_rows(tmp_path / "run")


def test_checkpoints_are_refused_with_distributed_training(tmp_path):
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    with pytest.raises(ValueError, match="checkpoint_every is not available with distributed"):
        ModelTrainer(clf, classification_corpus()).train(base_path=str(tmp_path), checkpoint_every=2,
                                                         distributed=True)
