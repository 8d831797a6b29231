"""Data-parallel training (multienc.parallel, docs/distributed.md): the staged step's shards add up to
the whole batch's gradients (dropout included), ``mpirun -n 2`` over loopback trains what one
process trains at the same global batch, rank 0 alone writes the files, and a rank that dies, fails
or stalls ends the whole job with a message naming a rank instead of a hang.

The MPI tests start real jobs with Open MPI's ``mpirun`` (``.ci/run`` installs it; ``make venv``
needs it for mpi4py); ranks run tests/_dp_script.py.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import multienc
from multienc.data import demo_corpus, demo_ner_corpus
from multienc.models import LanguageModel, MultiEncoder, SequenceTagger, TextClassifier, TextRegressor
from multienc.datasets import Sentence
from multienc.parallel import launched_ranks, loss_count, shard_batch, shard_range

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "_dp_script.py")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))
HUB = os.path.join(HERE, "fixtures", "tiny_hub")
TINY = [os.path.join(HUB, "roberta-base", "main"), os.path.join(HUB, "google--electra-base-discriminator", "main")]
#: the collective timeout the jobs here run with (seconds)
TIMEOUT = 20


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)


def _env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MULTIENC_COLLECTIVE_TIMEOUT=str(TIMEOUT),
               # a CI container runs as root; Open MPI refuses that unless told
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(extra)
    return env


def mpirun(n: int, *argv: str) -> list:
    """The command line of an n-rank job on this machine (loopback, more ranks than cores allowed)."""
    return ["mpirun", "-n", str(n), "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
            sys.executable, *argv]


def _models(task: str, folders: list = TINY):
    """A two-LM DME model of ``task`` on the tiny fixtures (dropout 0.1 in the LMs, 0.2 in the
    combiner) and 7 samples for it."""
    pooling = "word-level" if task == "crf" else "cls"
    lms = [LanguageModel(folder, pooling=pooling) for folder in folders]
    encoder = MultiEncoder(lms, combine_method="dme", combine_dropout=0.2, use_layer_norm=True)
    if task == "crf":
        return SequenceTagger(encoder, 7, use_crf=True), list(demo_ner_corpus().train)[:7]
    if task == "regress":
        rng = np.random.default_rng(0)
        return TextRegressor(encoder), [Sentence(s.text, float(rng.normal())) for s in list(demo_corpus().train)[:7]]
    return TextClassifier(encoder, 4), list(demo_corpus().train)[:7]


def _grads(task_model) -> dict:
    return {name: view.astype(np.float64) for name, view in task_model.buffers("grads")}


# --------------------------------------------------------------------------- one process

def test_shard_range_covers_every_row_once():
    for n in range(0, 12):
        for size in range(1, 5):
            parts = [shard_range(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_launched_ranks_reads_the_launchers_variables(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    assert launched_ranks() == 1
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    assert launched_ranks() == 8
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launched_ranks() == 3


@pytest.mark.parametrize("task", ["classify", "regress", "crf"])
def test_shards_add_up_to_the_whole_batch(task):
    """Two shards (3 and 4 sentences) with row0 and their share of the loss give the whole batch's
    loss and gradients, dropout in the LMs and the combiner included: the masks are the whole
    batch's. Without row0 (each shard drawing its masks from row 0) they do not."""
    _check_shards(*_models(task))


def test_modernbert_shards_add_up_to_the_whole_batch(tmp_path):
    """The same with ModernBERT (embedding, attention and MLP dropout 0.1: the tiny fixture has 0,
    as the released checkpoints) beside ELECTRA: its sliding-window attention's masks are the
    whole batch's too."""
    folder = tmp_path / "modernbert"
    shutil.copytree(os.path.join(HUB, "answerdotai--ModernBERT-base", "main"), folder)
    with open(folder / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    config.update(attention_dropout=0.1, embedding_dropout=0.1, mlp_dropout=0.1)
    with open(folder / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    _check_shards(*_models("classify", [str(folder), TINY[1]]))


def _check_shards(model, samples) -> None:
    tm = model.task_model
    inputs, targets, extra = model._inputs(samples, with_targets=True)
    trainable = [True, True]
    whole_loss = tm.forward_backward(inputs, targets, trainable, seed=5, **extra)
    for i in range(2):
        tm.backward_lm(i)
    whole = _grads(tm)
    total = loss_count(targets)
    summed = {k: np.zeros_like(v) for k, v in whole.items()}
    unshifted = {k: np.zeros_like(v) for k, v in whole.items()}
    loss = 0.0
    for lo, hi in ((0, 3), (3, 7)):
        part, part_targets, part_extra = shard_batch(inputs, targets, extra, lo, hi)
        share = loss_count(part_targets) / total
        for row0, acc in ((lo, summed), (0, unshifted)):
            shard_loss = tm.forward_backward(part, part_targets, trainable, seed=5, row0=row0, grad_scale=share,
                                             **part_extra)
            for i in range(2):
                tm.backward_lm(i)
            for k, v in _grads(tm).items():
                acc[k] += v
            if acc is summed:
                loss += shard_loss * share
    assert loss == pytest.approx(whole_loss, rel=1e-6)
    for k in whole:
        scale = np.linalg.norm(whole[k])
        assert scale > 0
        assert np.linalg.norm(summed[k] - whole[k]) <= 1e-6 * scale, k
        assert np.linalg.norm(unshifted[k] - whole[k]) > 1e-2 * scale, k  # the shift is what makes them equal


def test_staged_step_is_the_one_call_step():
    """forward_backward + backward_lm + update on the whole batch is the one-call train_step: the same
    loss and weights bit for bit; the gradient norm up to the order of its additions (the one-call step
    sums it per layer while the gradients are in cache, and over the embedding rows the batch used;
    update, after a cross-process sum, over whole buffers)."""
    model_a, samples = _models("classify")
    model_b, _ = _models("classify")
    model_b.load_state_dict(model_a.state_dict())  # the same start (each new head draws its own weights)
    inputs, targets, extra = model_a._inputs(samples, with_targets=True)
    rates, decay, trainable = [1e-3, 1e-3, 5e-3, 5e-3], [0.01] * 4, [True, False]
    for step in range(3):
        loss_a, norm_a = model_a.task_model.train_step(inputs, targets, rates, decay, trainable, seed=step)
        loss_b = model_b.task_model.forward_backward(inputs, targets, trainable, seed=step)
        for i in range(2):
            model_b.task_model.backward_lm(i)
        norm_b = model_b.task_model.update(rates, decay, trainable)
        assert loss_a == loss_b
        assert norm_a == pytest.approx(norm_b, rel=1e-12)
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_update_refuses_flags_other_than_the_backwards():
    model, samples = _models("classify")
    tm = model.task_model
    inputs, targets, extra = model._inputs(samples, with_targets=True)
    tm.forward_backward(inputs, targets, [True, False])
    tm.backward_lm(0)
    with pytest.raises(ValueError, match="language model 2: trainable is 1 but its gradients were not computed"):
        tm.update([1e-3] * 4, [0.0] * 4, [True, True])
    fresh, _ = _models("classify")
    with pytest.raises(RuntimeError, match="needs the head's backward first"):
        fresh.task_model.backward_lm(0)


def test_zero_grads_clears_the_buffers_it_is_asked_to():
    model, samples = _models("classify")
    tm = model.task_model
    inputs, targets, extra = model._inputs(samples, with_targets=True)
    tm.forward_backward(inputs, targets, [True, True])
    for i in range(2):
        tm.backward_lm(i)
    tm.zero_grads([True, False])
    grads = _grads(tm)
    assert not grads["head"].any() and not grads["lm.0"].any() and grads["lm.1"].any()


def test_buffer_views_are_the_live_weights():
    model, _ = _models("classify")
    views = dict(model.task_model.buffers("params"))
    assert set(views) == {"head", "lm.0", "lm.1"}
    state = model.task_model.state()
    name, _, off = model.task_model.param_info()[0]
    assert views["head"][off] == state[name].reshape(-1)[0]
    views["head"][off] += 1.0
    assert model.task_model.state()[name].reshape(-1)[0] == state[name].reshape(-1)[0] + 1.0
    addresses = model.task_model.buffer_addresses("grads")
    assert [(n, size) for n, _, size in addresses] == [(n, v.size) for n, v in model.task_model.buffers("grads")]


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch):
    from multienc.training import ModelTrainer
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    model, _ = _models("classify")
    with pytest.raises(RuntimeError, match="pip install mpi4py"):
        ModelTrainer(model, demo_corpus()).train(epochs=1, distributed=True)
    with pytest.raises(ValueError, match="distributed must be True, False or"):
        ModelTrainer(model, demo_corpus()).train(epochs=1, distributed="yes")


# --------------------------------------------------------------------------- MPI jobs

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The fixture training as one plain process, as a 1-rank and as a 2-rank MPI job."""
    out = {}
    for name, cmd in (("single", [sys.executable, SCRIPT, "train"]),
                      ("mpi1", mpirun(1, SCRIPT, "train", "--distributed")),
                      ("mpi2", mpirun(2, SCRIPT, "train", "--distributed"))):
        folder = tmp_path_factory.mktemp(name)
        proc = subprocess.run(cmd + [str(folder)], capture_output=True, text=True, env=_env(), timeout=600)
        assert proc.returncode == 0, f"{name}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        out[name] = folder
    return out


def _loss_tsv(folder) -> list:
    """loss.tsv's rows without the TIMESTAMP column."""
    rows = [line.split("\t") for line in (folder / "loss.tsv").read_text().splitlines()]
    drop = rows[0].index("TIMESTAMP")
    return [r[:drop] + r[drop + 1:] for r in rows]


#: parameters whose true gradient is exactly zero: a softmax does not change when the same number is
#: added to all its inputs, and these biases add the same number to every score of their softmax (a
#: key bias to every key's score for one query, the DME attention bias to every LM's score). Their
#: computed gradient is float32 rounding noise, which AdamW turns into steps of about the learning
#: rate in any run, one process or several: they follow different noise, not different data.
def _zero_gradient(name: str) -> bool:
    return name.endswith("attention.self.key.bias") or name == "combiner.attention.bias"


def test_zero_gradient_parameters_get_only_rounding_noise():
    model, samples = _models("classify")
    tm = model.task_model
    inputs, targets, extra = model._inputs(samples, with_targets=True)
    tm.forward_backward(inputs, targets, [True, True], seed=1, **extra)
    for i in range(2):
        tm.backward_lm(i)
    views = dict(tm.buffers("grads"))
    grads = {}
    for i, lm in enumerate(model.language_models):
        grads.update({f"lm.{i}.{k}": v for k, v in lm.encoder._unflatten(views[f"lm.{i}"]).items()})
    grads.update({name: views["head"][off:off + int(np.prod(shape))] for name, shape, off in tm.param_info()})
    typical = np.median([np.abs(g).mean() for name, g in grads.items() if not _zero_gradient(name)])
    for name, g in grads.items():
        if _zero_gradient(name):
            assert np.abs(g).max() < 1e-4 * typical, name


def test_two_ranks_train_what_one_process_trains(runs):
    single = np.load(runs["single"] / "final.npz")
    two = np.load(runs["mpi2"] / "final.npz")
    assert list(single) == list(two)
    a = np.concatenate([single[k].ravel() for k in single if not _zero_gradient(k)]).astype(np.float64)
    b = np.concatenate([two[k].ravel() for k in single if not _zero_gradient(k)]).astype(np.float64)
    relative = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert 0 < relative <= 1e-6  # not bit for bit: two partial sums of the batch's gradient, added by MPI
    for name in single:
        x, y = single[name].astype(np.float64), two[name].astype(np.float64)
        if _zero_gradient(name):  # AdamW steps of at most ~lr (1e-3 for the LMs, 5e-3 for the head) per step
            assert np.abs(x - y).max() <= 20 * 2 * 5e-3, name
        else:
            assert np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(x), name
    rows_1, rows_2 = _loss_tsv(runs["single"]), _loss_tsv(runs["mpi2"])
    assert len(rows_1) == 3 and rows_1[0] == rows_2[0]  # header + 2 epochs of 10 steps
    for r1, r2 in zip(rows_1[1:], rows_2[1:]):
        for column, v1, v2 in zip(rows_1[0], r1, r2):
            if column in ("TRAIN_LOSS", "DEV_LOSS"):  # printed to 6 decimals: may round apart by one unit
                assert abs(float(v1) - float(v2)) <= 1.01e-6, (column, v1, v2)
            else:
                assert v1 == v2, column


def test_one_rank_job_is_the_single_process_bit_for_bit(runs):
    single, one = np.load(runs["single"] / "final.npz"), np.load(runs["mpi1"] / "final.npz")
    for name in single:
        np.testing.assert_array_equal(single[name], one[name], err_msg=name)


def test_rank_0_alone_writes_the_files(runs):
    files = sorted(p.name for p in runs["mpi2"].iterdir())
    assert files == sorted(p.name for p in runs["single"].iterdir())
    assert files == ["best-model.pt", "final.npz", "history.json", "loss.tsv", "training.log"]
    log = (runs["mpi2"] / "training.log").read_text()
    assert " - processes: 2 (data parallel" in log
    assert log.count("EPOCH 1 done") == 1  # one rank logged
    assert "gradient all-reduce:" in log


def _wait_for(paths, proc, seconds=300):
    deadline = time.monotonic() + seconds
    while not all(os.path.exists(p) for p in paths):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.2)


def test_a_killed_rank_ends_the_job(tmp_path):
    pid_file = str(tmp_path / "pid")
    proc = subprocess.Popen(mpirun(2, SCRIPT, "train", str(tmp_path / "run"), "--distributed", "--epochs", "500",
                                   "--pid-file", pid_file), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env())
    try:
        _wait_for([pid_file + ".0", pid_file + ".1"], proc)
        killed = time.monotonic()
        os.kill(int(open(pid_file + ".1").read()), signal.SIGKILL)
        out, _ = proc.communicate(timeout=TIMEOUT + 60)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert took < TIMEOUT + 30, f"the job took {took:.0f} s to end"
    assert "rank 1" in out, out[-3000:]


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    proc = subprocess.run(mpirun(2, SCRIPT, "train", str(tmp_path / "run"), "--distributed", "--epochs", "500",
                                 "--fail-rank", "1"), capture_output=True, text=True, env=_env(), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "multienc: rank 1: failed:" in out and "MemoryError: out of memory (a failure of this rank alone)" in out


def test_a_stalled_rank_ends_the_job_after_the_timeout(tmp_path):
    started = time.monotonic()
    proc = subprocess.run(mpirun(2, SCRIPT, "stall", "600"), capture_output=True, text=True,
                          env=_env(MULTIENC_COLLECTIVE_TIMEOUT="3"), timeout=300)
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "multienc: rank 0: the test's sum did not complete within 3 s" in out, out[-3000:]
    assert took < 60


def test_nccl_needs_the_cuda_backend_or_says_how_it_is_built():
    from multienc.engine.nccl import NcclCommunicator, nccl_unique_id
    try:
        from multienc.engine import _C_nccl  # noqa: F401
    except ImportError:  # a build without NCCL: the error says how to get it
        with pytest.raises(RuntimeError, match="built when nvcc and NCCL"):
            nccl_unique_id()
        return
    with pytest.raises(ValueError, match="unique_id must be the 128 bytes"):
        NcclCommunicator(b"short", 1, 0)
    with pytest.raises(RuntimeError, match="the CUDA backend is not set up in this process"):
        NcclCommunicator(bytes(128), 1, 0)
