"""The combination search: train every non-empty subset of some language models (or the listed
combinations) for every seed, each run an ordinary :class:`~multienc.training.ModelTrainer` run in
its own folder, then tabulate the dev (and test) metrics' mean ± standard deviation over the seeds
per combination, sorted by the dev main metric (docs/distributed.md, "The combination search").

    from multienc.experiments import combination_search
    table = combination_search(GLUE_COLA(), ["roberta-base", "google/electra-base-discriminator",
                                             "bert-base-cased"], seeds=5, base_path="search/cola",
                               epochs=3, learning_rate=2e-5, batch_size=16)

Layout of ``base_path``: ``<lm>+<lm>/seed-<n>/`` per run (the trainer's ``training.log``,
``loss.tsv``, ``best-model.pt`` when ``save_best_model=True``, the worker's ``worker.log`` and, once
the run has finished, ``result.json``), and the tables ``results.md``, ``results.csv`` and the
figure ``results.png``. A run with a ``result.json`` is finished: a search started again (after an
interruption, or with more seeds or combinations) trains only the runs that have none.

Where the runs go: in one process, a pool of ``processes`` worker processes (each a fresh Python
with ``threads`` OpenMP threads, running one run at a time); under ``mpirun`` / ``srun`` (several
ranks), consecutive ranks form groups of ``ranks_per_run`` that take the runs in turn, each run
data-parallel over its group.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from multienc.datasets import Corpus
from multienc.models import LanguageModel, MultiEncoder, SequenceTagger, TaskHead, TextClassifier, TextRegressor
from multienc.parallel import ProcessGroup, launched_ranks
from multienc.training import ModelTrainer

__all__ = ["combination_search", "build_model", "SearchRun", "PLAN_FILE", "RESULT_FILE"]

#: what a search remembers about itself in ``base_path`` (the corpus, the runs, the settings)
PLAN_FILE = "search-plan.pkl"
#: the file that marks a run as finished, with its scores
RESULT_FILE = "result.json"


def build_model(corpus: Corpus, language_models: Sequence[LanguageModel], combine_method: str = "dme") -> TaskHead:
    """The head ``corpus`` needs (a SequenceTagger for sequence labeling, else a TextRegressor or a
    TextClassifier) over one language model or a MultiEncoder of several."""
    lms = list(language_models)
    encoder = MultiEncoder(lms, combine_method=combine_method) if len(lms) > 1 else lms[0]
    if corpus.task_type == "Sequence labeling":
        return SequenceTagger(encoder=encoder, num_classes=corpus.num_classes)
    head = TextRegressor if corpus.is_regression else TextClassifier
    return head(encoder=encoder, num_classes=corpus.num_classes)


@dataclass(frozen=True)
class SearchRun:
    """One run of a search: a combination of language models (ids or folders) and a seed."""

    language_models: Tuple[str, ...]
    seed: int

    @property
    def combination(self) -> str:
        """The combination's name: the models' names (last part of each id) joined by ``+``."""
        return "+".join(_name(m) for m in self.language_models)

    def folder(self, base_path: str) -> str:
        """Where this run's files go."""
        return os.path.join(base_path, _slug(self.combination), f"seed-{self.seed}")


def _name(model: str) -> str:
    return os.path.basename(os.path.normpath(model))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-")


def _plan_runs(language_models: Sequence[str], combinations: Optional[Sequence[Sequence[str]]],
               seeds: Sequence[int]) -> List[SearchRun]:
    if combinations is None:
        combos = [c for k in range(1, len(language_models) + 1) for c in itertools.combinations(language_models, k)]
    else:
        combos = [tuple(c) for c in combinations]
        unknown = sorted({m for c in combos for m in c} - set(language_models))
        if unknown:
            raise ValueError(f"combinations name language models that are not in language_models: {unknown}")
        if any(not c or len(set(c)) != len(c) for c in combos):
            raise ValueError("every combination needs one or more different language models")
    names = [SearchRun(c, 0).combination for c in combos]
    if len(set(names)) != len(names):
        raise ValueError(f"two combinations have the same name ({names}); the models' names (the last part "
                         "of each id) must differ")
    return [SearchRun(c, s) for c in combos for s in seeds]


def _read_result(run: SearchRun, base_path: str) -> Optional[Dict[str, Any]]:
    """The finished run's result, or None (no result file, or one of another run)."""
    path = os.path.join(run.folder(base_path), RESULT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    if result.get("language_models") != list(run.language_models) or result.get("seed") != run.seed:
        return None
    return result


def _best_epoch(history: Dict[str, Any]) -> int:
    scores = [-math.inf if s is None or math.isnan(s) else s for s in history["dev_score_history"]]
    return int(np.argmax(scores)) if scores else -1


def _train_run(plan: Dict[str, Any], run: SearchRun, group: Optional[ProcessGroup]) -> Optional[Dict[str, Any]]:
    """Train one run and write its result file (on the group's rank 0); the result, or None on the
    other ranks of its group."""
    corpus: Corpus = plan["corpus"]
    folder = run.folder(plan["base_path"])
    lms = [LanguageModel(m, pooling=plan["pooling"]) for m in run.language_models]
    model = build_model(corpus, lms, plan["combine_method"])
    trainer = ModelTrainer(model=model, corpus=corpus)
    started = time.perf_counter()
    history = trainer.train(base_path=folder, seed=run.seed, distributed=group or False, **plan["train_args"])
    if group is not None and not group.is_main:
        return None
    best = _best_epoch(history)
    result = {"language_models": list(run.language_models), "combination": run.combination, "seed": run.seed,
              "main_metric": trainer.main_metric, "best_epoch": best + 1,
              "dev": history["dev_scores"][best] if best >= 0 else {}, "test": history["test_scores"],
              "seconds": round(time.perf_counter() - started, 1)}
    tmp = os.path.join(folder, RESULT_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, os.path.join(folder, RESULT_FILE))  # the run counts as finished from here on
    return result


def _worker_main(base_path: str, index: int) -> None:
    """Entry point of a local worker process: run number ``index`` of the plan in ``base_path``."""
    with open(os.path.join(base_path, PLAN_FILE), "rb") as f:
        plan = pickle.load(f)
    _train_run(plan, plan["runs"][index], None)


def _run_pool(plan: Dict[str, Any], pending: List[int], processes: int, threads: int, progress: bool) -> List[str]:
    """Run the pending runs in at most ``processes`` worker processes at a time; the failed runs
    (one line each, naming its log)."""
    base = plan["base_path"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    running: Dict[int, Tuple[subprocess.Popen, Any]] = {}
    queue = list(pending)
    failed: List[str] = []
    # a batch system's SIGTERM (a job's time limit) stops the workers too, as Ctrl-C does; one that
    # arrives while a worker starts takes effect once the worker is in `running`, so none is left behind
    starting, stop = [False], []

    def terminated(signum: int, frame: Any) -> None:
        if starting[0]:
            stop.append(signum)
        else:
            raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        while queue or running:
            while queue and len(running) < processes:
                i = queue.pop(0)
                run = plan["runs"][i]
                os.makedirs(run.folder(base), exist_ok=True)
                cmd = [sys.executable, "-c", "import sys; from multienc.experiments.search import _worker_main; "
                       "_worker_main(sys.argv[1], int(sys.argv[2]))", base, str(i)]
                starting[0] = True
                try:
                    log = open(os.path.join(run.folder(base), "worker.log"), "w", encoding="utf-8")
                    running[i] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
                finally:
                    starting[0] = False
                if stop:
                    raise SystemExit(128 + stop[0])
            time.sleep(0.2)
            for i, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[i]
                run = plan["runs"][i]
                if proc.returncode != 0:
                    failed.append(f"{run.combination} seed {run.seed} (exit status {proc.returncode}; see "
                                  f"{os.path.join(run.folder(base), 'worker.log')})")
                elif progress:
                    print(f"finished {run.combination} seed {run.seed}"
                          f" ({len(pending) - len(queue) - len(running)}/{len(pending)})", flush=True)
    finally:  # interrupted: stop the workers (their runs stay unfinished and run again next time)
        for proc, log in running.values():
            proc.terminate()
        for proc, log in running.values():
            proc.wait()
            log.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return failed


def combination_search(corpus: Corpus, language_models: Sequence[str], seeds: Union[int, Sequence[int]] = 5,
                       combinations: Optional[Sequence[Sequence[str]]] = None, base_path: str = "search",
                       combine_method: str = "dme", pooling: str = "cls", processes: Optional[int] = None,
                       threads: Optional[int] = None, ranks_per_run: int = 1, progress: bool = True,
                       **train_args: Any) -> List[Dict[str, Any]]:
    """Train every combination of ``language_models`` for every seed and tabulate the results.

    Args:
        corpus: the corpus every run trains on (dev: model selection; test: final scores).
        language_models: hub ids or model folders (two models must not share the last part of their id).
        seeds: the seeds (a number n means seeds 1..n); a run's seed fixes its data order, dropout and
            head initialisation (``ModelTrainer.train(seed=...)``).
        combinations: the combinations to train (lists of entries of ``language_models``); default:
            every non-empty subset, singles first.
        base_path: the search's folder (module docstring); a search there before is resumed.
        combine_method, pooling: the MultiEncoder's combination (for two or more models) and every
            model's pooling.
        processes, threads: local runs at a time and OpenMP threads of each (defaults: as many runs as
            cores, each on ``cores // processes`` threads); not used under mpirun / srun.
        ranks_per_run: under mpirun / srun, ranks per run (data-parallel within the run).
        progress: print a line per finished run.
        train_args: arguments of :meth:`ModelTrainer.train` for every run (``epochs``,
            ``learning_rate``, ``batch_size``, ...; ``save_best_model`` defaults to False here: a
            search writes many models).

    Returns the table's rows, best dev score first: dicts with ``combination``, ``runs`` (finished),
    ``seeds``, and ``dev`` / ``test``: ``{metric: (mean, standard deviation)}`` over the seeds (ddof 1,
    NaN for one run). Writes them as ``results.md``, ``results.csv`` and (with matplotlib)
    ``results.png`` into ``base_path``. RuntimeError after the table when runs failed (each named with
    its ``worker.log``); started again, the search retries them.
    """
    for key in ("base_path", "seed", "distributed", "progress"):
        if key in train_args:
            raise ValueError(f"{key} is set by the search for each run; leave it out of the training arguments")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
    seed_list = list(range(1, seeds + 1)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: give a number >= 1 or a list of seeds")
    if not language_models:
        raise ValueError("language_models: give one or more models")
    runs = _plan_runs(list(language_models), combinations, seed_list)
    train_args = {"save_best_model": False, **train_args, "progress": False}
    plan = {"corpus": corpus, "runs": runs, "base_path": base_path, "combine_method": combine_method,
            "pooling": pooling, "train_args": train_args}
    if launched_ranks() > 1:
        return _search_on_ranks(plan, ranks_per_run, progress)
    pending = _pending(plan, progress)
    failed: List[str] = []
    if pending:
        cores = os.cpu_count() or 1
        processes = processes or min(len(pending), cores)
        failed = _run_pool(plan, pending, processes, threads or max(1, cores // processes), progress)
    rows = _write_tables(runs, base_path)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    return rows


def _pending(plan: Dict[str, Any], progress: bool) -> List[int]:
    """The runs without a result (their indexes); writes the plan file the workers read."""
    runs, base = plan["runs"], plan["base_path"]
    pending = [i for i, run in enumerate(runs) if _read_result(run, base) is None]
    if progress:
        print(f"{len(runs)} runs ({len(runs) - len(pending)} finished before), {len(pending)} to train", flush=True)
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, PLAN_FILE), "wb") as f:
        pickle.dump(plan, f)
    return pending


def _search_on_ranks(plan: Dict[str, Any], ranks_per_run: int, progress: bool) -> List[Dict[str, Any]]:
    """Under mpirun / srun: groups of ``ranks_per_run`` consecutive ranks take the pending runs in
    turn (group g trains pending runs g, g + groups, ...); rank 0 writes the tables after all."""
    world = ProcessGroup.world()
    pending = world.broadcast(_pending(plan, progress) if world.is_main else None, what="the pending runs")
    group = world.split(ranks_per_run)
    groups = math.ceil(world.size / ranks_per_run)
    mine = pending[world.rank // ranks_per_run::groups]
    for i in mine:
        run = plan["runs"][i]
        result = _train_run(plan, run, group if group.size > 1 else None)
        if progress and result is not None:
            print(f"rank {world.rank}: finished {run.combination} seed {run.seed}", flush=True)
    world.wait_all()  # runs take different times: the other groups may still train for long
    return _write_tables(plan["runs"], plan["base_path"]) if world.is_main else []


def _mean_std(values: List[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value)."""
    a = np.array(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def _summary(runs: List[SearchRun], base_path: str) -> Tuple[List[Dict[str, Any]], str, List[str]]:
    """(rows per combination best dev score first, main metric, metrics) from the finished runs."""
    by_combo: Dict[str, List[Dict[str, Any]]] = {}
    for run in runs:
        result = _read_result(run, base_path)
        by_combo.setdefault(run.combination, [])
        if result is not None:
            by_combo[run.combination].append(result)
    finished = [r for results in by_combo.values() for r in results]
    main = finished[0]["main_metric"] if finished else ""
    metrics = list(dict.fromkeys([main] + [m for r in finished for m in r["dev"]]))
    rows = []
    for combo, results in by_combo.items():
        row: Dict[str, Any] = {"combination": combo, "runs": len(results), "seeds": [r["seed"] for r in results]}
        for split in ("dev", "test"):
            row[split] = {m: _mean_std([r[split][m] for r in results]) for m in metrics
                          if results and all(m in r[split] for r in results)}
        rows.append(row)
    rows.sort(key=lambda r: -r["dev"][main][0] if main in r["dev"] and not math.isnan(r["dev"][main][0])
              else math.inf)
    return rows, main, metrics


def _write_tables(runs: List[SearchRun], base_path: str) -> List[Dict[str, Any]]:
    """``results.md``, ``results.csv`` and ``results.png`` from the finished runs; returns the rows."""
    rows, main, metrics = _summary(runs, base_path)
    columns = [(split, m) for split in ("dev", "test") for m in metrics if any(m in r[split] for r in rows)]

    def cell(row: Dict[str, Any], split: str, m: str) -> str:
        if m not in row[split]:
            return "–"
        mean, std = row[split][m]
        return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"

    lines = [f"Mean ± standard deviation (ddof 1) over the seeds; sorted by dev {main}.", "",
             "| combination | runs | " + " | ".join(f"{s} {m}" for s, m in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    lines += [f"| {r['combination']} | {r['runs']} | " + " | ".join(cell(r, s, m) for s, m in columns) + " |"
              for r in rows]
    with open(os.path.join(base_path, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(base_path, "results.csv"), "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["combination", "runs"] + [f"{s}_{m}_{k}" for s, m in columns for k in ("mean", "std")])
        for r in rows:
            values = [r[s].get(m, (math.nan, math.nan)) for s, m in columns]
            out.writerow([r["combination"], r["runs"]] + ["" if math.isnan(v) else repr(v)
                                                          for pair in values for v in pair])
    try:
        from multienc.plot import plot_search_results
        fig = plot_search_results(rows, main)
    except ImportError:  # matplotlib is optional (the plot extra): the tables are written anyway
        return rows
    fig.savefig(os.path.join(base_path, "results.png"), dpi=120)
    return rows
