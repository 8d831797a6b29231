"""ModelTrainer: fine-tune a task head (and its LMs) on a corpus.

    trainer = ModelTrainer(model=classifier, corpus=corpus)
    history = trainer.train(learning_rate=2e-5, batch_size=16, epochs=10, shuffle_data=True)
    trainer.best_model.predict_tags([...], corpus.label_map)

Python batches, tokenizes and logs; each training step (every LM's forward,
pooling, combination, decoder, loss, the whole backward, gradient clipping and
AdamW with per-group learning rates) is one call into C with the GIL released.
Files in ``base_path`` (as Flair users expect): ``training.log``, ``loss.tsv``
and ``best-model.pt`` (the best dev score so far; a safetensors file, see
:mod:`multienc.formats.checkpoint`); for sequence labeling also ``test.tsv`` (CoNLL
style: token, gold tag, predicted tag; a blank line after each sentence).

``train(..., checkpoint_every=N)`` also writes ``training-checkpoint.pt`` every N steps (and on
Ctrl-C, after the current step): weights, AdamW state, data order, RNG, position, best score and
log positions. ``ModelTrainer(model, corpus).resume(base_path)`` continues from it and ends with
the same weights and ``loss.tsv`` as a run that was never interrupted.

``train(..., distributed=True)`` under ``mpirun -n N`` (or ``srun``) trains data-parallel: every
rank takes its shard of every batch, gradients are summed across the ranks, dev and test
evaluation are sharded, and rank 0 alone writes the files above (docs/distributed.md).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from multienc.datasets import Corpus, Sentence
from multienc.engine import build_info, check_device
from multienc.evaluation import metrics as me_metrics
from multienc.formats import schema
from multienc.formats.checkpoint import CheckpointError, checked_field, read_checkpoint, write_checkpoint
from multienc.models import MultiEncoder, SequenceTagger, TaskHead, TextClassifier, TextRegressor
from multienc.models.initialization import generator
from multienc.models.inputs import chunked
from multienc.parallel import ProcessGroup
from multienc.training.log import flush_log, log, log_line, training_log
from multienc.training.optim import linear_schedule_factor
from multienc.training.settings import TrainSettings

__all__ = ["ModelTrainer", "TrainingError", "default_base_path", "CHECKPOINT_NAME"]

#: the training checkpoint in a run's folder (resume with ModelTrainer.resume)
CHECKPOINT_NAME = "training-checkpoint.pt"
BEST_NAME = "best-model.pt"
# What an interrupted atomic write of either leaves behind (safetensors.save_file's temp names).
_STALE_TEMP = re.compile(r"^\.(best-model\.pt|training-checkpoint\.pt)\.[A-Za-z0-9_]+\.tmp$")


class TrainingError(RuntimeError):
    """Training stopped (e.g. a NaN or infinite loss); the message names the epoch and batch."""


@dataclass
class _Position:
    """Where a run is, and what it has gathered: everything a training checkpoint records besides
    the settings, the weights and the optimizer state."""

    epoch: int = 1                      # the epoch being trained (1-based)
    batch: int = 0                      # its batches done
    step: int = 0                       # optimizer steps done in the run (the schedule's position)
    epoch_rng: Optional[dict] = None    # the data-order RNG when the epoch began (redraws its batches)
    rng: Optional[dict] = None          # the RNG now (None at the start of an epoch)
    losses: List[float] = field(default_factory=list)  # this epoch's batch losses
    lrs: List[float] = field(default_factory=list)     # the last step's rates (loss.tsv's column)
    history: Dict[str, Any] = field(default_factory=lambda: {
        "train_loss": [], "val_loss": [], "dev_score_history": [], "dev_scores": [], "test_scores": {}})
    best_score: Optional[float] = None
    has_best: bool = False
    steps_trained: int = 0              # the model's own count (0: its head is still to be drawn)
    log_sizes: Dict[str, int] = field(default_factory=dict)  # loss.tsv / training.log bytes at the checkpoint


_RNG = schema.Obj({"bit_generator": schema.Const("PCG64"), "state": schema.Obj({"state": schema.Int(0, 1 << 128),
                                                                                 "inc": schema.Int(0, 1 << 128)},
                                                                                required=("state", "inc")),
                   "has_uint32": schema.Int(0, 1), "uinteger": schema.Int(0, (1 << 32) - 1)},
                  required=("bit_generator", "state", "has_uint32", "uinteger"))
_POSITION_SCHEMA = schema.Obj({
    "epoch": schema.Int(1, 1 << 31), "batch": schema.Int(0, 1 << 31), "step": schema.Int(0, 1 << 62),
    "epoch_rng": _RNG, "rng": schema.Opt(_RNG), "losses": schema.Arr(schema.Float()), "lrs": schema.Arr(schema.Float(0.0)),
    "history": schema.Obj({}), "best_score": schema.Opt(schema.Any_()), "has_best": schema.Bool(),
    "steps_trained": schema.Int(0, 1 << 62),
    "log_sizes": schema.Obj({"loss.tsv": schema.Int(0, 1 << 50), "training.log": schema.Int(0, 1 << 50)},
                            required=("loss.tsv", "training.log"), closed=True),
}, required=("epoch", "batch", "step", "epoch_rng", "rng", "losses", "lrs", "history", "has_best",
             "steps_trained", "log_sizes"), closed=True)
_STATE_SCHEMA = schema.Obj({
    "position": schema.Obj({}), "settings": schema.Obj({}), "corpus": schema.Str(64, 64),
    "adamw_steps": schema.Arr(schema.Int(0, 1 << 62), max_len=65), "best_metadata": schema.Opt(schema.Obj({})),
}, required=("position", "settings", "corpus", "adamw_steps"), closed=True)


def _corpus_fingerprint(train: Sequence[Sentence], dev: Sequence[Sentence], test: Sequence[Sentence]) -> str:
    """sha256 of the texts and labels a run trains and evaluates on (resuming needs the same data)."""
    digest = hashlib.sha256()
    for split in (train, dev, test):
        digest.update(json.dumps([[s.text, s.label] for s in split], default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete the temporary files an interrupted write of ``best-model.pt`` or the training
    checkpoint left in ``folder`` (``.best-model.pt.XXXX.tmp``); returns their names."""
    removed = []
    for name in os.listdir(folder):
        if _STALE_TEMP.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))
            removed.append(name)
    return removed


def default_base_path(corpus: Corpus, model: TaskHead) -> str:
    """``models/<corpus prefix>-<encoder type>-<model name>``.

    The prefix is the seed's (the first four characters of the corpus name without spaces and
    hyphens: ``models/CoLA-multi-transformer-electra-base-discriminator-roberta-base-classifier``,
    where the seed's README looks for it) unless those four characters cut a word, as in
    ``"multienc demo topics"``: then it is the whole name as a slug (``multienc-demo-topics``).
    """
    name = corpus.name
    if len(name) > 4 and name[3].isalnum() and name[4].isalnum():
        prefix = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    else:
        prefix = name[:4].replace(" ", "").replace("-", "")
    return os.path.join("models", f"{prefix}-{model.encoder_type}-{model.name}")


def _process_group(distributed: Union[bool, ProcessGroup]) -> Optional[ProcessGroup]:
    """The ranks ``train(distributed=...)`` asks for: none, every process of the job, or a given group."""
    if isinstance(distributed, ProcessGroup):
        return distributed
    if distributed is True:
        return ProcessGroup.world()
    if distributed is False:
        return None
    raise ValueError(f"distributed must be True, False or a multienc.parallel.ProcessGroup, got {distributed!r}")


class ModelTrainer:
    """Trains ``model`` on ``corpus`` (train split), evaluates on dev after each epoch, keeps
    the best model by the corpus' main metric and finally evaluates it on test when the
    corpus has a test split.

    Args:
        model: a :class:`TextClassifier`, :class:`TextRegressor` or :class:`SequenceTagger`.
        corpus: a :class:`multienc.datasets.Corpus` of the matching task type.
        optimizer: ``"AdamW"`` (the only optimizer; kept for the seed's signature).
        device: None (train where the model is: :attr:`model.device`) or that same device;
            another one is a ValueError naming both.
    """

    def __init__(self, model: TaskHead, corpus: Corpus, optimizer: Any = "AdamW", device: Optional[str] = None):
        if not isinstance(model, TaskHead):
            raise TypeError(f"model must be a TextClassifier, TextRegressor or SequenceTagger, "
                            f"got {type(model).__name__}")
        if not isinstance(corpus, Corpus):
            raise TypeError(f"corpus must be a multienc.datasets.Corpus, got {type(corpus).__name__}")
        if getattr(optimizer, "__name__", optimizer) != "AdamW":
            raise ValueError(f"only the AdamW optimizer is available, got {optimizer!r}")
        regression = corpus.is_regression
        self.tagging = corpus.task_type == "Sequence labeling"
        if self.tagging != isinstance(model, SequenceTagger):
            raise ValueError(f"{corpus.name} is a {corpus.task_type} corpus; " + (
                "use a SequenceTagger" if self.tagging else "a SequenceTagger needs a Sequence labeling corpus"))
        if isinstance(model, TextClassifier) and regression:
            raise ValueError(f"{corpus.name} is a regression corpus ({corpus.task_type}); use a TextRegressor")
        if isinstance(model, TextRegressor) and not regression:
            raise ValueError(f"{corpus.name} is a {corpus.task_type} corpus; use a TextClassifier")
        if model.num_classes != corpus.num_classes:
            raise ValueError(f"the model has num_classes={model.num_classes} but {corpus.name} has "
                             f"{corpus.num_classes} classes; build the head with num_classes=corpus.num_classes")
        self.device: str = check_device(device, model.device, "ModelTrainer", f"the model {model.name!r} lives")
        self.model = model
        self.corpus = corpus
        self.metrics: List[str] = list(corpus.evaluation_metric)
        self.main_metric: str = corpus.main_metric
        self.encoder_type = model.encoder_type
        self.best_model_score: Optional[float] = None
        self._best: Optional[Tuple[Dict[str, str], Dict[str, np.ndarray]]] = None
        self._best_model: Optional[TaskHead] = None
        #: one array per LM that takes the best model's copy of its weights, allocated once and
        #: overwritten at each new best (a fresh copy each time cost seconds at base size)
        self._best_lm_buffers: Optional[List[np.ndarray]] = None
        #: the ranks of a distributed ``train`` call while it runs (None: one process)
        self.group: Optional[ProcessGroup] = None

    # ----------------------------------------------------------------- helpers
    @property
    def best_model(self) -> Optional[TaskHead]:
        """The model with the best dev score of the last ``train`` call (built on first access)."""
        if self._best_model is None and self._best is not None:
            self._best_model = TaskHead.from_saved(*self._best, source="best model")
        return self._best_model

    def _check_labels(self, split: Sequence[Sentence], which: str) -> None:
        for i, s in enumerate(split):
            lab = s.label
            if self.tagging:
                self._check_tags(s, f"{self.corpus.name} {which}[{i}]")
            elif self.corpus.is_regression:
                if isinstance(lab, bool) or not isinstance(lab, (int, float)) or not math.isfinite(lab):
                    raise ValueError(f"{self.corpus.name} {which}[{i}]: regression label {lab!r} is not a finite number")
            elif isinstance(lab, bool) or not isinstance(lab, (int, np.integer)) or not 0 <= lab < self.model.num_classes:
                raise ValueError(f"{self.corpus.name} {which}[{i}]: label {lab!r} is outside the "
                                 f"{self.model.num_classes} classes (0..{self.model.num_classes - 1})")

    def _check_tags(self, s: Sentence, where: str) -> None:
        """A tagged sentence: at least one non-blank token, one tag id per token, ids in range."""
        C = self.model.num_classes
        if not s.tokens:
            raise ValueError(f"{where}: the sentence has no tokens; a tagged sentence needs at least one word")
        blank = [j for j, w in enumerate(s.tokens) if not isinstance(w, str) or not w.strip()]
        if blank:
            raise ValueError(f"{where}: token {blank[0]} ({s.tokens[blank[0]]!r}) is empty or not a str")
        if not isinstance(s.label, list) or len(s.label) != len(s.tokens):
            n = len(s.label) if isinstance(s.label, list) else s.label
            raise ValueError(f"{where}: {len(s.tokens)} tokens but tags {n!r}; one tag per token is needed")
        bad = [t for t in s.label if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < C]
        if bad:
            raise ValueError(f"{where}: tag {bad[0]!r} is outside the {C} tags (0..{C - 1}) of the label map")

    @staticmethod
    def _non_empty(split: Sequence[Sentence], which: str) -> List[Sentence]:
        kept = [s for s in split if not s.is_empty]
        skipped = len(split) - len(kept)
        if skipped:
            msg = f"skipping {skipped} empty sentence(s) of the {which} split"
            warnings.warn(msg, stacklevel=3)
            log.info(msg)
        return kept

    def evaluate(self, sentences: Sequence[Sentence], batch_size: int = 32) -> Tuple[float, Dict[str, float], list]:
        """(mean batch loss, {metric: score}, predictions) of the current model on ``sentences``:
        class ids, scores, or tag-id lists (one id per token) by the model's task. During a
        distributed ``train`` the batches are shared out among the ranks (contiguous blocks) and
        their results gathered in order, so every rank gets what one process computes."""
        chunks = list(chunked(list(sentences), batch_size))
        lo, hi = self.group.shard(len(chunks)) if self.group else (0, len(chunks))
        results = [self.model.evaluate_batch(chunk, self.corpus.label_map) for chunk in chunks[lo:hi]]
        if self.group:
            results = [r for part in self.group.allgather(results, "gathering evaluation results") for r in part]
        losses = [loss for loss, _ in results]
        pred = [p for _, batch in results for p in batch]
        gold = [s.label for s in sentences]
        scores = {m: me_metrics.compute(m, gold, pred, self.corpus.task_type, self.corpus.label_map)
                  for m in self.metrics}
        return float(np.mean(losses)) if losses else float("nan"), scores, pred

    def _tag_names(self, ids: Sequence[int]) -> List[str]:
        inverse = {v: k for k, v in (self.corpus.label_map or {}).items()}
        return [inverse.get(int(t), str(t)) for t in ids]

    def _write_test_tsv(self, path: str, sentences: Sequence[Sentence], pred: List[List[int]]) -> None:
        """CoNLL-style predictions: ``token<TAB>gold<TAB>predicted`` lines, a blank line after each sentence."""
        with open(path, "w", encoding="utf-8") as f:
            for s, p in zip(sentences, pred):
                for word, gold, guess in zip(s.tokens, self._tag_names(s.label), self._tag_names(p)):
                    f.write(f"{word}\t{gold}\t{guess}\n")
                f.write("\n")

    # ------------------------------------------------------------------- train
    def train(self, learning_rate: Union[float, Sequence[float]] = 2e-5, decoder_learning_rate: Optional[float] = None,
              batch_size: int = 16, epochs: int = 10, shuffle_data: bool = False, num_workers: int = 0,
              base_path: Optional[str] = None, save_best_model: bool = True, use_linear_scheduler: bool = False,
              warmup_fraction: float = 0.1, weight_decay: float = 0.01, seed: Optional[int] = None,
              group_by_length: bool = False, max_grad_norm: float = 5.0, eval_batch_size: int = 32,
              progress: bool = True, checkpoint_every: Optional[int] = None,
              distributed: Union[bool, ProcessGroup] = False, precision: str = "fp32") -> Dict[str, List[float]]:
        """Train and return the history ``{"train_loss", "val_loss", "dev_score_history", "dev_scores",
        "test_scores"}`` (per epoch; ``dev_score_history`` holds the main metric).

        ``learning_rate``: one rate, or one per LM. ``decoder_learning_rate``: rate of the new layers
        (combiner and decoder; default: the largest LM rate). Rates and ``weight_decay`` must be
        finite and fit float32. ``shuffle_data`` shuffles the train split from the second epoch on
        (as the seed). ``seed`` fixes data order, dropout and, for a model not trained yet, the head's
        initial weights; same seed and thread count -> identical losses and weights.
        ``group_by_length`` batches sentences of similar length together (less padding).
        ``num_workers`` must be 0 (it is in the seed's signature; there are no workers).
        ``checkpoint_every``: write ``training-checkpoint.pt`` every that many steps, for
        :meth:`resume` after a crash or a kill (Ctrl-C always writes one after the current step,
        then raises KeyboardInterrupt; one process only, not with ``distributed``). A model whose
        weights, dev loss or dev score are not finite is never saved as the best model.
        ``distributed``: True to train data-parallel over every process ``mpirun`` / ``srun`` started
        (needs mpi4py; a :class:`~multienc.parallel.ProcessGroup` to train over that group):
        ``batch_size`` stays the global batch, each rank computes its share, the result equals one
        process's within rounding, rank 0 writes the files (docs/distributed.md).
        ``precision``: ``"fp32"`` (default) or ``"bf16"``: the linear layers of the language models
        and the head take their inputs rounded to bfloat16 and accumulate in float32, as PyTorch's
        bf16 autocast does for them; weights, gradients, AdamW state, LayerNorm, softmax, attention
        and losses stay float32, so no loss scaling is needed (bf16 has float32's exponent range).
        CPUs with AVX512-BF16 only (NotImplementedError elsewhere: :func:`multienc.engine.bf16_available`
        says). The dev evaluations of the run use it too; the model is back in fp32 when ``train``
        returns.
        The arguments are checked and frozen into a :class:`TrainSettings`.
        """
        if checkpoint_every and distributed is not False:
            raise ValueError("checkpoint_every is not available with distributed training (the training "
                             "checkpoint holds one process's state); train without one of the two")
        group = _process_group(distributed)
        model, corpus = self.model, self.corpus
        if seed is None:
            seed = int(generator().integers(0, 2 ** 31))
            if group:
                seed = group.broadcast(seed, what="the seed")
        settings = TrainSettings.from_arguments(
            len(model.language_models), learning_rate, decoder_learning_rate, batch_size, epochs, shuffle_data,
            num_workers, base_path or default_base_path(corpus, model), save_best_model, use_linear_scheduler,
            warmup_fraction, weight_decay, seed, group_by_length, max_grad_norm, eval_batch_size, progress,
            checkpoint_every, precision, model.device)
        train, dev, test = self._splits()
        if model.steps_trained == 0:
            model.reset_head(np.random.default_rng([settings.seed, 1]))
        if group is None:
            self._start_folder(settings.base_path)
            with training_log(settings.base_path):
                self._prepare_folder(settings.base_path)
                return self._train(settings, train, dev, test, None)
        # errors every rank raises at the same point propagate; any other one ends the job at once
        self.group = group
        try:
            with group.fail_fast((TrainingError,)):
                self._start_ranks(group)
                if not group.is_main:  # rank 0 alone writes the log and the files
                    log.disabled = True
                    try:
                        return self._train(settings, train, dev, test, None)
                    finally:
                        log.disabled = False
                self._start_folder(settings.base_path)
                with training_log(settings.base_path):
                    self._prepare_folder(settings.base_path)
                    return self._train(settings, train, dev, test, None)
        finally:
            self.group = None

    @staticmethod
    def _start_folder(base_path: str) -> None:
        """Create the run's folder; a training checkpoint of an earlier run there is removed (with a warning)."""
        os.makedirs(base_path, exist_ok=True)
        stale = os.path.join(base_path, CHECKPOINT_NAME)
        if os.path.exists(stale):
            warnings.warn(f"{stale} of an earlier run is replaced by this run's (use resume() to continue one)",
                          stacklevel=3)
            os.unlink(stale)

    def _start_ranks(self, group: ProcessGroup) -> None:
        """Every rank starts from rank 0's weights, with the same number of threads (the gradient
        norm's rounding, and so the weights, would otherwise drift apart between ranks)."""
        group.check_same(build_info()["openmp_max_threads"],
                         "the number of OpenMP threads per rank (give every rank the same OMP_NUM_THREADS)")
        state = self.model.state_dict()
        group.broadcast_arrays(list(state.values()), what="rank 0's weights")
        if not group.is_main:
            self.model.load_state_dict(state, source="rank 0's weights")

    def _weights_digest(self) -> int:
        """A checksum of every weight's bits (ranks compare it after each epoch)."""
        digest = 0
        for value in self.model.state_dict().values():
            digest = zlib.crc32(np.ascontiguousarray(value).view(np.uint8), digest)
        return digest

    def resume(self, base_path: str) -> Dict[str, List[float]]:
        """Continue the run whose ``training-checkpoint.pt`` is in ``base_path`` (written by
        ``train(..., checkpoint_every=N)`` or by Ctrl-C) and return its whole history.

        The trainer must hold the same model (same language models and head settings; its weights
        are replaced by the checkpoint's) and the same corpus as the interrupted run. Weights, AdamW
        moments and step counts, the learning-rate schedule, the data order and RNG, the epoch and
        batch, the best score and the ``loss.tsv`` / ``training.log`` contents are restored, so the
        run ends with the same weights and ``loss.tsv`` (save for its TIMESTAMP column) as one that
        was never interrupted, on the same thread count. FileNotFoundError without a checkpoint;
        :class:`~multienc.formats.checkpoint.CheckpointError` for a damaged one; ValueError for a
        different model or corpus.
        """
        path = os.path.join(base_path, CHECKPOINT_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no training checkpoint to resume (train with checkpoint_every=N, "
                                    f"or stop a run with Ctrl-C, to get one)")
        meta, tensors = read_checkpoint(path)
        if "training_state" not in meta:
            raise CheckpointError(path, "training_state", "is missing: this is a model checkpoint, not a "
                                                          "training checkpoint")
        try:
            state = checked_field(schema.load_json(meta["training_state"]), _STATE_SCHEMA, "training_state", path)
        except ValueError as e:
            raise CheckpointError(path, "training_state", str(e)) from None
        settings = TrainSettings.from_json(state["settings"], path)
        position = _Position(**checked_field(state["position"], _POSITION_SCHEMA, "training_state.position", path))
        train, dev, test = self._splits()
        if state["corpus"] != _corpus_fingerprint(train, dev, test):
            raise ValueError(f"{path}: the checkpoint was written for other data than {self.corpus.name}'s "
                             f"(its texts or labels differ); resume with the corpus the run was started with")
        model = self.model
        saved_head, saved_lms = json.loads(meta["head"]), json.loads(meta["language_models"])
        head = {"head": type(model).__name__, **model.checkpoint_settings()}
        lms = [(lm.model_id, lm.pooling, lm.fine_tune) for lm in model.language_models]
        if saved_head != head or [(x.get("model_id"), x.get("pooling"), x.get("fine_tune")) for x in saved_lms] != lms:
            raise ValueError(f"{path}: the checkpoint was written for another model ({saved_head}, language models "
                             f"{[x.get('model_id') for x in saved_lms]}); build the model as for the interrupted run")
        try:
            model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(("adamw.", "best/"))},
                                  source=path)
            model.task_model.load_adamw_state(self._adamw_tensors(tensors, state["adamw_steps"], path), source=path)
        except ValueError as e:
            raise CheckpointError(path, "tensors", str(e)) from None
        model.steps_trained = position.steps_trained
        self._best, self._best_model, self.best_model_score = None, None, position.best_score
        if position.has_best:
            if settings.save_best_model:
                self._best = read_checkpoint(os.path.join(base_path, BEST_NAME))
            else:
                self._best = ({k: v for k, v in (state["best_metadata"] or {}).items()},
                              {k[len("best/"):]: v for k, v in tensors.items() if k.startswith("best/")})
        for name, size in position.log_sizes.items():
            os.truncate(os.path.join(base_path, name), size)
        with training_log(base_path, append=True):
            self._prepare_folder(base_path)
            log.info(f"resuming from {path}: epoch {position.epoch}, batch {position.batch}, step {position.step}")
            return self._train(settings, train, dev, test, position)

    @staticmethod
    def _adamw_tensors(tensors: Dict[str, np.ndarray], steps: List[int], path: str
                       ) -> List[Tuple[int, np.ndarray, np.ndarray]]:
        out = []
        for i, step in enumerate(steps):
            first, second = tensors.get(f"adamw.{i}.m"), tensors.get(f"adamw.{i}.v")
            if (first is None) != (second is None):
                raise CheckpointError(path, f"adamw.{i}", "has one moment tensor without the other")
            out.append((step, first, second) if first is not None else (step, None, None))
        return out

    def _splits(self) -> Tuple[List[Sentence], List[Sentence], List[Sentence]]:
        """The corpus' splits, labels checked, empty sentences dropped (with a warning); the model
        takes the corpus' label map and name."""
        corpus = self.corpus
        self._check_labels(corpus.train, "train")
        self._check_labels(corpus.dev, "dev")
        self._check_labels(corpus.test, "test")
        train = self._non_empty(corpus.train, "train")
        dev = self._non_empty(corpus.dev, "dev")
        test = self._non_empty(corpus.test, "test")
        if not train:
            raise ValueError(f"{corpus.name}: the train split has no non-empty sentence")
        self.model.label_map = corpus.label_map
        self.model.corpus_name = corpus.name
        return train, dev, test

    def _prepare_folder(self, base_path: str) -> None:
        removed = remove_stale_temp_files(base_path)
        if removed:
            log.info(f"removed {len(removed)} temporary file(s) of interrupted checkpoint writes in {base_path}")

    def _batches(self, sentences: List[Sentence], batch_size: int, epoch: int, shuffle: bool,
                 group_by_length: bool, rng: np.random.Generator) -> List[List[Sentence]]:
        order = np.arange(len(sentences))
        if shuffle and epoch > 1:
            order = rng.permutation(len(sentences))
        if group_by_length:
            def length(s: Sentence) -> int:
                return sum(len(t) for t in (s.text if isinstance(s.text, tuple) else (s.text,)))
            mega = batch_size * 50
            grouped = []
            for i in range(0, len(order), mega):
                part = sorted(order[i:i + mega], key=lambda j: length(sentences[j]))
                grouped += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
            if shuffle:
                grouped = [grouped[i] for i in rng.permutation(len(grouped))]
            return [[sentences[j] for j in b] for b in grouped]
        return [[sentences[j] for j in order[i:i + batch_size]] for i in range(0, len(order), batch_size)]

    def _log_header(self, s: TrainSettings, total_steps: int) -> None:
        model, corpus = self.model, self.corpus
        log.info(f"Model: {model!r}")
        log_line()
        log.info(f"Corpus: {corpus.name}")
        log.info(f"Split: {corpus.show_data_split()}")
        log.info(f"Task type: {corpus.task_type}")
        log.info(f"Evaluation: {', '.join(self.metrics)}")
        log_line()
        log.info("Language Models:")
        for lm in model.language_models:
            log.info(f"- {lm.name}" + ("" if lm.fine_tune else " (frozen)"))
        log_line()
        enc = model.encoder
        if isinstance(enc, MultiEncoder) and enc.num_lms > 1:
            log.info(f"Model type: multi-transformer {model.name}")
            log.info(f" - combine method: {enc.combine_method}")
            log.info(f" - combine dropout: {enc.combine_dropout}")
            log.info(f" - alternate freezing: {enc.alternate_freezing_prob}")
        else:
            log.info(f"Model type: single-transformer {model.name}")
        log_line()
        log.info("Model parameters:")
        log.info(f" - device: {model.device}, precision: {s.precision}")
        log.info(f" - epochs: {s.epochs}")
        log.info(f" - batch size: {s.batch_size}")
        if self.group:
            log.info(f" - processes: {self.group.size} (data parallel: each computes its share of every batch)")
        log.info(f" - training steps: {total_steps}")
        log.info(" - optimizer: AdamW")
        names = [lm.name for lm in model.language_models] + ["combiner", "decoder"]
        log.info(" - learning rates: " + ", ".join(f"{n} {lr:g}" for n, lr in zip(names, s.learning_rates)))
        log.info(f" - linear schedule: {s.use_linear_scheduler}")
        if s.use_linear_scheduler:
            log.info(f" - warmup fraction: {s.warmup_fraction}")
        log.info(f" - weight decay: {s.weight_decay}")
        log.info(f" - shuffle data: {s.shuffle_data}")
        log.info(f" - save best model: {s.save_best_model}")
        log.info(f" - seed: {s.seed}")
        log_line()

    def _train(self, s: TrainSettings, train: List[Sentence], dev: List[Sentence], test: List[Sentence],
               resumed: Optional[_Position]) -> Dict[str, Any]:
        """The run in the settings' precision; the model is back in fp32 afterwards, however it ends."""
        self.model.task_model.set_precision(s.precision)
        try:
            return self._run(s, train, dev, test, resumed)
        finally:
            self.model.task_model.set_precision("fp32")

    def _run(self, s: TrainSettings, train: List[Sentence], dev: List[Sentence], test: List[Sentence],
             resumed: Optional[_Position]) -> Dict[str, Any]:
        model = self.model
        n_lms = len(model.language_models)
        rng = np.random.default_rng(s.seed)
        best_path = os.path.join(s.base_path, BEST_NAME)
        loss_tsv = os.path.join(s.base_path, "loss.tsv")
        steps_per_epoch = math.ceil(len(train) / s.batch_size)
        total_steps = s.epochs * steps_per_epoch
        warmup_steps = math.ceil(total_steps * s.warmup_fraction)
        wd = [s.weight_decay] * (n_lms + 2)
        freeze_prob = model.encoder.alternate_freezing_prob if isinstance(model.encoder, MultiEncoder) else 0.0
        corpus_key = _corpus_fingerprint(train, dev, test)
        group = self.group
        main = group is None or group.is_main
        if resumed is None:
            self._log_header(s, total_steps)
            if main:
                with open(loss_tsv, "w", encoding="utf-8") as f:
                    f.write("\t".join(["EPOCH", "TIMESTAMP", "LEARNING_RATE", "TRAIN_LOSS", "DEV_LOSS"]
                                      + [f"DEV_{m.upper()}" for m in self.metrics]) + "\n")
            self.best_model_score, self._best, self._best_model = None, None, None
            pos = _Position(lrs=list(s.learning_rates))
        else:
            pos = resumed
        history = pos.history
        model.prepare_training()
        interrupted: List[int] = []
        # Ctrl-C checkpoints one process's run; under mpirun it stops the job as before
        restore = self._catch_sigint(interrupted) if group is None else (lambda: None)
        try:
            for epoch in range(pos.epoch, s.epochs + 1):
                if pos.epoch != epoch or pos.epoch_rng is None:  # a new epoch (not the one resumed)
                    pos.epoch, pos.batch, pos.losses = epoch, 0, []
                    pos.epoch_rng = rng.bit_generator.state
                else:
                    rng.bit_generator.state = pos.epoch_rng
                batches = self._batches(train, s.batch_size, epoch, s.shuffle_data, s.group_by_length, rng)
                if pos.rng is not None and pos.batch:
                    rng.bit_generator.state = pos.rng
                log_every = max(1, int(len(batches) / 10))
                bar = tqdm(batches[pos.batch:], desc=f"epoch {epoch}/{s.epochs}", unit="batch", initial=pos.batch,
                           total=len(batches), disable=not (s.progress and main), leave=False, file=sys.stderr)
                started, seen = time.perf_counter(), 0
                for b, batch in enumerate(bar, start=pos.batch + 1):
                    factor = linear_schedule_factor(pos.step, total_steps, warmup_steps) \
                        if s.use_linear_scheduler else 1.0
                    pos.lrs = [lr * factor for lr in s.learning_rates]
                    trainable = [lm.fine_tune for lm in model.language_models]
                    if freeze_prob > 0 and rng.random() < freeze_prob:
                        trainable[int(rng.integers(0, n_lms))] = False
                    try:
                        loss, _ = model.train_step(batch, pos.lrs, wd, trainable, seed=(s.seed << 32) + pos.step,
                                                   max_grad_norm=s.max_grad_norm, group=group)
                    except ValueError as e:
                        if "no update was made" not in str(e):
                            raise
                        intact = f"; the best model so far is intact at {best_path}" \
                            if self._best and s.save_best_model else ""
                        log.info(f"training stopped: epoch {epoch}, batch {b}: {e}")
                        raise TrainingError(f"epoch {epoch}, batch {b}/{len(batches)}: {e}{intact}") from None
                    pos.step += 1
                    pos.batch = b
                    pos.losses.append(loss)
                    seen += len(batch)
                    rate = seen / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(loss=f"{loss:.4f}", sent_s=f"{rate:.1f}")
                    if b % log_every == 0:
                        log.info(f"epoch {epoch} - iter {b}/{len(batches)} - loss {np.mean(pos.losses):.5f} - "
                                 f"lr - {pos.lrs[0]:.0e} - {rate:.1f} sentences/s")
                    if interrupted or (s.checkpoint_every and pos.step % s.checkpoint_every == 0):
                        pos.rng = rng.bit_generator.state
                        self._write_checkpoint(s, pos, corpus_key)
                    if interrupted:
                        self._stop(s, pos)
                bar.close()
                if group:
                    group.check_same(self._weights_digest(), f"the weights after epoch {epoch} (a checksum)")
                    log.info(f"gradient all-reduce: {group.reduce_seconds / len(batches):.4f} s per step, "
                             f"{group.reduce_wait_seconds / len(batches):.4f} s of it not overlapped with the backward")
                    group.reduce_seconds = group.reduce_wait_seconds = 0.0
                self._end_epoch(s, pos, dev, loss_tsv, best_path)
                if interrupted:
                    pos.epoch, pos.batch, pos.losses, pos.rng = epoch + 1, 0, [], None
                    pos.epoch_rng = rng.bit_generator.state
                    self._write_checkpoint(s, pos, corpus_key)
                    self._stop(s, pos)
        finally:
            restore()
        log.info("DONE TRAINING.")
        if self._best is not None:
            log.info(f"Best model score on dev set: {self.main_metric} {self.best_model_score}")
        if test and self._best is not None:
            self._test(test, s, history)
        finished = os.path.join(s.base_path, CHECKPOINT_NAME)
        if main and os.path.exists(finished):
            os.unlink(finished)  # the run is complete: nothing to resume
        return history

    def _end_epoch(self, s: TrainSettings, pos: _Position, dev: List[Sentence], loss_tsv: str,
                   best_path: str) -> None:
        """Dev evaluation, the loss.tsv row and the best model at the end of epoch ``pos.epoch``."""
        model, history, epoch = self.model, pos.history, pos.epoch
        writes = self.group is None or self.group.is_main  # rank 0 alone writes the files
        train_loss = float(np.mean(pos.losses))
        history["train_loss"].append(train_loss)
        log_line()
        log.info(f"EPOCH {epoch} done: train loss avg {train_loss:.4f}")
        dev_loss, scores, _ = self.evaluate(dev, s.eval_batch_size) if dev else (float("nan"), {}, None)
        main = scores.get(self.main_metric, float("nan"))
        history["val_loss"].append(dev_loss)
        history["dev_score_history"].append(main)
        history["dev_scores"].append(scores)
        log.info(f"DEV: loss {dev_loss:.4f} " + " ".join(f"{m} {round(v, 4)}" for m, v in scores.items()))
        if writes:
            with open(loss_tsv, "a", encoding="utf-8") as f:
                f.write("\t".join([str(epoch), time.strftime("%H:%M:%S"), f"{pos.lrs[0]:.4e}", f"{train_loss:.6f}",
                                   f"{dev_loss:.6f}"] + [f"{scores.get(m, float('nan')):.6f}" for m in self.metrics])
                        + "\n")
        problem = self._not_finite(dev_loss, main, bool(dev))
        if problem:
            log.info(f"epoch {epoch}: {problem}: not saved as the best model")
        elif not dev or not pos.has_best or main > pos.best_score:
            sizes = [lm.encoder.num_floats for lm in model.language_models]
            if self._best_lm_buffers is None or [b.size for b in self._best_lm_buffers] != sizes:
                self._best_lm_buffers = [np.empty(n, np.float32) for n in sizes]
            # the last best's buffers are overwritten now: no best model until the copy is whole
            self._best, self._best_model, pos.has_best = None, None, False
            self._best = model.checkpoint(self._best_lm_buffers)
            pos.has_best, pos.best_score = True, main
            self.best_model_score = main
            if s.save_best_model and writes:
                log.info("saving best model")
                write_checkpoint(best_path, self._best[1], self._best[0])
        log_line()

    def _not_finite(self, dev_loss: float, main: float, has_dev: bool) -> str:
        """What is not finite about the current model ('' if nothing): its weights, dev loss or score."""
        # each LM checked in place (copying every weight for it took seconds at base size); the
        # names only when one is not finite
        bad = [f"lm.{i}.{name}" for i, lm in enumerate(self.model.language_models) if not lm.encoder.params_finite()
               for name, w in lm.encoder.state_dict().items() if not np.isfinite(w).all()]
        bad += [name for name, w in self.model.task_model.state().items() if not np.isfinite(w).all()]
        if bad:
            return f"{len(bad)} weight tensor(s) are not finite (e.g. {bad[0]})"
        if has_dev and not (math.isfinite(dev_loss) and math.isfinite(main)):
            return f"the dev loss ({dev_loss}) or {self.main_metric} ({main}) is not finite"
        return ""

    @staticmethod
    def _catch_sigint(flag: List[int]):
        """Make Ctrl-C set ``flag`` (the loop then checkpoints after the current step and stops); a
        second Ctrl-C interrupts at once. Returns the function that restores the previous handler."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            flag.append(signum)
            signal.signal(signal.SIGINT, previous)
            log.info("Ctrl-C: stopping after the current step (press it again to stop at once)")

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _stop(self, s: TrainSettings, pos: _Position) -> None:
        path = os.path.join(s.base_path, CHECKPOINT_NAME)
        log.info(f"interrupted at epoch {pos.epoch}, batch {pos.batch} (step {pos.step}); "
                 f"the run continues with ModelTrainer(model, corpus).resume({s.base_path!r}) "
                 f"or 'multienc train --resume'")
        raise KeyboardInterrupt(f"training interrupted; {path} holds the run: resume it with "
                                f"ModelTrainer(model, corpus).resume({s.base_path!r})")

    def _write_checkpoint(self, s: TrainSettings, pos: _Position, corpus_key: str) -> None:
        """``training-checkpoint.pt``, atomically: the model checkpoint plus the optimizer state and
        the run's position (see :class:`_Position`)."""
        model = self.model
        flush_log()
        pos.steps_trained = model.steps_trained
        pos.log_sizes = {name: os.path.getsize(os.path.join(s.base_path, name))
                         for name in ("loss.tsv", "training.log")}
        meta, tensors = model.checkpoint()
        steps = []
        for i, (step, first, second) in enumerate(model.task_model.adamw_state()):
            steps.append(step)
            if step or first.any() or second.any():
                tensors[f"adamw.{i}.m"], tensors[f"adamw.{i}.v"] = first, second
        best_meta = None
        if pos.has_best and not s.save_best_model:
            best_meta, best_tensors = self._best
            tensors.update({f"best/{k}": v for k, v in best_tensors.items()})
        meta["training_state"] = json.dumps({"position": asdict(pos), "settings": s.to_json(), "corpus": corpus_key,
                                             "adamw_steps": steps, "best_metadata": best_meta})
        write_checkpoint(os.path.join(s.base_path, CHECKPOINT_NAME), tensors, meta)

    def _test(self, test: List[Sentence], s: TrainSettings, history: Dict[str, Any]) -> None:
        """Evaluate the best model on the test split: scores into ``history`` and the log, a report,
        and for a tagger ``test.tsv``."""
        log.info("Evaluating on test set...")
        log.info(f"Corpus: {self.corpus.name}")
        current = self.model
        self.model = self.best_model
        try:
            _, scores, pred = self.evaluate(test, s.eval_batch_size)
        finally:
            self.model = current
        history["test_scores"] = scores
        log.info("TEST set performance: " + " ".join(f"{m} {round(v, 4)}" for m, v in scores.items()))
        if self.tagging and (self.group is None or self.group.is_main):
            self._write_test_tsv(os.path.join(s.base_path, "test.tsv"), test, pred)
            report = me_metrics.entity_classification_report([self._tag_names(t.label) for t in test],
                                                             [self._tag_names(p) for p in pred])
            log.info("entity-level precision, recall and F1 per type (seqeval):\n" + report)
        elif isinstance(current, TextClassifier):
            names = None
            if self.corpus.label_map:
                inv = {v: k for k, v in self.corpus.label_map.items()}
                names = [inv[i] for i in range(len(inv))]
            report = me_metrics.classification_report([t.label for t in test], pred,
                                                      labels=list(range(current.num_classes)), target_names=names)
            log.info("\n" + report)
