"""The combination search (multienc.experiments, ``multienc search``): every non-empty combination of
three tiny fixture models for two seeds, the table of means and standard deviations (checked against
the runs' own result files), resuming after the search was killed half way, and the runs spread over
MPI ranks."""
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

import multienc
from multienc.experiments import RESULT_FILE, SearchRun, combination_search
from multienc.experiments.search import _plan_runs

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))
HUB = os.path.join(HERE, "fixtures", "tiny_hub")
FIXTURES = {"roberta": os.path.join(HUB, "roberta-base", "main"),
            "electra": os.path.join(HUB, "google--electra-base-discriminator", "main"),
            "spanbert": os.path.join(HUB, "SpanBERT--spanbert-base-cased", "main")}


@pytest.fixture
def models(tmp_path, monkeypatch):
    """The fixture models as folders named after them (a model's name is its folder's name)."""
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)
    folder = tmp_path / "lms"
    folder.mkdir()
    for name, target in FIXTURES.items():
        (folder / name).symlink_to(target)
    return [str(folder / name) for name in FIXTURES]


def search_command(models, base, *extra):
    args = [a for m in models for a in ("--lm", m)]
    return [sys.executable, "-m", "multienc", "search", "--corpus", "demo", *args, "--seeds", "2", "--epochs", "1",
            "--batch-size", "32", "--base-path", str(base), *extra]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MULTIENC_COLLECTIVE_TIMEOUT="120",
                **extra)


def _results(base):
    return sorted(base.glob(f"*/seed-*/{RESULT_FILE}"))


def test_every_non_empty_subset_singles_first():
    runs = _plan_runs(["a/x", "b/y", "c/z"], None, [1, 2])
    assert [r.combination for r in runs[::2]] == ["x", "y", "z", "x+y", "x+z", "y+z", "x+y+z"]
    assert [r.seed for r in runs[:2]] == [1, 2] and len(runs) == 14
    assert SearchRun(("a/x", "b/y"), 3).folder("base") == os.path.join("base", "x+y", "seed-3")
    only = _plan_runs(["a/x", "b/y"], [["b/y", "a/x"]], [7])
    assert only == [SearchRun(("b/y", "a/x"), 7)]
    with pytest.raises(ValueError, match="not in language_models"):
        _plan_runs(["a/x"], [["a/x", "q/w"]], [1])
    with pytest.raises(ValueError, match="same name"):
        _plan_runs(["a/x", "b/x"], None, [1])


def test_the_search_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="seed is set by the search"):
        combination_search(None, ["a"], seeds=1, base_path=str(tmp_path), seed=3)
    with pytest.raises(ValueError, match="seeds"):
        combination_search(None, ["a"], seeds=[], base_path=str(tmp_path))


def _processes_running_in(base):
    """Pids of processes whose command line names ``base`` (the search's workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if str(base).encode() in f.read():
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def _table(base):
    with open(base / "results.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_killed_half_way_the_search_resumes_with_the_missing_runs(models, tmp_path):
    base = tmp_path / "search"
    first = subprocess.Popen(search_command(models, base, "--processes", "2", "--threads", "1"), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    try:
        while len(_results(base)) < 4:
            assert first.poll() is None, "the search ended before it was interrupted"
            assert time.monotonic() < deadline, "no runs finished"
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGTERM)  # what a batch system sends at a job's time limit
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM
    assert not _processes_running_in(base)  # the search stopped its workers
    done = {p: p.read_text() for p in _results(base)}
    assert 4 <= len(done) < 14
    stamps = {p: p.stat().st_mtime_ns for p in done}
    second = subprocess.run(search_command(models, base, "--processes", "2", "--threads", "1"), env=_env(),
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"14 runs ({len(done)} finished before), {14 - len(done)} to train" in second.stdout
    assert second.stdout.count("finished ") == 14 - len(done) + 1  # one line per trained run, + the summary
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished runs were not trained again
    assert len(_results(base)) == 14

    # the table: one row per combination, mean and sample standard deviation of the runs' own scores
    rows = _table(base)
    assert len(rows) == 7 and all(r["runs"] == "2" for r in rows)
    for row in rows:
        scores = [json.loads(p.read_text()) for p in _results(base) if p.parent.parent.name == row["combination"]]
        for split in ("dev", "test"):
            for metric in scores[0][split]:
                values = [s[split][metric] for s in scores]
                assert float(row[f"{split}_{metric}_mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
                assert float(row[f"{split}_{metric}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
    means = [float(r["dev_accuracy_mean"]) for r in rows]
    assert means == sorted(means, reverse=True)
    markdown = (base / "results.md").read_text()
    assert "| combination | runs | dev accuracy |" in markdown and markdown.count("\n| ") == 8
    assert (base / "results.png").stat().st_size > 0
    assert "| roberta+electra+spanbert | 2 |" in second.stdout  # the CLI prints the table
    run = base / "roberta+electra" / "seed-1"
    assert {"training.log", "loss.tsv", "worker.log", RESULT_FILE} <= {p.name for p in run.iterdir()}
    assert not (run / "best-model.pt").exists()  # no checkpoints unless --save-models


def test_runs_spread_over_mpi_ranks(models, tmp_path):
    base = tmp_path / "search"
    cmd = ["mpirun", "-n", "2", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
           *search_command(models[:2], base, "--no-progress")]
    proc = subprocess.run(cmd, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(_results(base)) == 6
    # the two ranks took turns: each wrote the logs of its own runs only, rank 0 the table
    rows = _table(base)
    assert [r["combination"] for r in rows] and sorted(r["combination"] for r in rows) == \
        ["electra", "roberta", "roberta+electra"]
    assert proc.stdout.count("| roberta+electra | 2 |") == 1


def test_a_run_can_be_data_parallel_over_its_rank_group(models, tmp_path):
    base = tmp_path / "search"
    cmd = ["mpirun", "-n", "2", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
           *search_command(models[:2], base, "--seeds", "1", "--ranks-per-run", "2", "--combination",
                           f"{models[0]},{models[1]}")]
    proc = subprocess.run(cmd, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.parent.parent.name for p in _results(base)] == ["roberta+electra"]
    log = (base / "roberta+electra" / "seed-1" / "training.log").read_text()
    assert " - processes: 2 (data parallel" in log


def test_failed_runs_are_named_and_the_table_covers_the_others(models, tmp_path):
    from multienc.data import demo_corpus
    from multienc.datasets import Corpus
    demo = demo_corpus()
    corpus = Corpus("tiny", demo.task_type, list(demo.train)[:16], list(demo.dev)[:8], None, demo.label_map)
    missing = str(tmp_path / "lms" / "missing")  # no such model: its runs fail in their workers
    base = tmp_path / "search"
    with pytest.raises(RuntimeError, match=r"2 run\(s\) failed: missing seed 1 .*worker\.log.*roberta\+missing seed 1"):
        combination_search(corpus, [models[0], missing], seeds=1, base_path=str(base), processes=2, threads=1,
                           progress=False, epochs=1, batch_size=8)
    assert "is neither an existing folder nor a hub model id" in (base / "missing" / "seed-1" / "worker.log").read_text()
    assert [(r["combination"], r["runs"]) for r in _table(base)] == [("roberta", "1"), ("missing", "0"),
                                                                     ("roberta+missing", "0")]


def test_a_combination_of_models_not_given_is_refused(models, tmp_path):
    proc = subprocess.run(search_command(models[:2], tmp_path / "s", "--combination", f"{models[0]},elsewhere"),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f"multienc search: error: --combination '{models[0]},elsewhere' names elsewhere, not among the --lm " \
           f"models ({models[0]}, {models[1]})" in proc.stderr


def test_a_sigterm_while_a_worker_starts_stops_that_worker_too(tmp_path, monkeypatch):
    """A batch system's SIGTERM that arrives while the pool starts a worker (here: right after the
    worker's process exists, before the pool has recorded it) still stops that worker: the pool exits
    with 128 + SIGTERM and leaves no worker behind."""
    from multienc.experiments import search
    started = []
    real_popen = subprocess.Popen

    def popen_then_sigterm(cmd, **kw):
        proc = real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw)  # a worker stand-in
        started.append(proc)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before this returns
        time.sleep(0.05)
        return proc

    monkeypatch.setattr(search.subprocess, "Popen", popen_then_sigterm)
    plan = {"base_path": str(tmp_path), "runs": [SearchRun(("a",), 0), SearchRun(("a",), 1)]}
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            search._run_pool(plan, [0, 1], processes=2, threads=1, progress=False)
        assert exc.value.code == 128 + signal.SIGTERM
        assert len(started) == 1 and started[0].poll() == -signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is before  # the pool's handler is gone again
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
