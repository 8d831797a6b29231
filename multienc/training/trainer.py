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

``train(..., distributed=True)`` under ``mpirun -n N`` (or ``srun``) trains data-parallel: every
rank takes its shard of every batch, gradients are summed across the ranks, dev and test
evaluation are sharded, and rank 0 alone writes the files above (docs/distributed.md).
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from multienc.datasets import Corpus, Sentence
from multienc.engine import build_info, check_device
from multienc.evaluation import metrics as me_metrics
from multienc.models import MultiEncoder, SequenceTagger, TaskHead, TextClassifier, TextRegressor
from multienc.models.initialization import generator
from multienc.models.inputs import chunked
from multienc.parallel import ProcessGroup
from multienc.training.log import log, log_line, training_log
from multienc.training.optim import linear_schedule_factor
from multienc.training.settings import TrainSettings

__all__ = ["ModelTrainer", "TrainingError", "default_base_path"]


class TrainingError(RuntimeError):
    """Training stopped (e.g. a NaN or infinite loss); the message names the epoch and batch."""


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


def _score_key(score: float) -> float:
    return -math.inf if score is None or math.isnan(score) else score


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
              progress: bool = True, distributed: Union[bool, ProcessGroup] = False) -> Dict[str, List[float]]:
        """Train and return the history ``{"train_loss", "val_loss", "dev_score_history", "dev_scores",
        "test_scores"}`` (per epoch; ``dev_score_history`` holds the main metric).

        ``learning_rate``: one rate, or one per LM. ``decoder_learning_rate``: rate of the new layers
        (combiner and decoder; default: the largest LM rate). ``shuffle_data`` shuffles the train
        split from the second epoch on (as the seed). ``seed`` fixes data order, dropout and, for a
        model not trained yet, the head's initial weights; same seed and thread count -> identical
        losses and weights. ``group_by_length`` batches sentences of similar length together (less
        padding). ``num_workers`` must be 0 (it is in the seed's signature; there are no workers).
        ``distributed``: True to train data-parallel over every process ``mpirun`` / ``srun`` started
        (needs mpi4py; a :class:`~multienc.parallel.ProcessGroup` to train over that group):
        ``batch_size`` stays the global batch, each rank computes its share, the result equals one
        process's within rounding, rank 0 writes the files (docs/distributed.md).
        The arguments are checked and frozen into a :class:`TrainSettings`.
        """
        group = _process_group(distributed)
        model, corpus = self.model, self.corpus
        if seed is None:
            seed = int(generator().integers(0, 2 ** 31))
            if group:
                seed = group.broadcast(seed, what="the seed")
        settings = TrainSettings.from_arguments(
            len(model.language_models), learning_rate, decoder_learning_rate, batch_size, epochs, shuffle_data,
            num_workers, base_path or default_base_path(corpus, model), save_best_model, use_linear_scheduler,
            warmup_fraction, weight_decay, seed, group_by_length, max_grad_norm, eval_batch_size, progress)
        if model.steps_trained == 0:
            model.reset_head(np.random.default_rng([settings.seed, 1]))

        self._check_labels(corpus.train, "train")
        self._check_labels(corpus.dev, "dev")
        self._check_labels(corpus.test, "test")
        train = self._non_empty(corpus.train, "train")
        dev = self._non_empty(corpus.dev, "dev")
        test = self._non_empty(corpus.test, "test")
        if not train:
            raise ValueError(f"{corpus.name}: the train split has no non-empty sentence")

        model.label_map = corpus.label_map
        model.corpus_name = corpus.name
        if group is None:
            os.makedirs(settings.base_path, exist_ok=True)
            with training_log(settings.base_path):
                return self._train(settings, train, dev, test)
        # errors every rank raises at the same point propagate; any other one ends the job at once
        self.group = group
        try:
            with group.fail_fast((TrainingError,)):
                self._start_ranks(group)
                if not group.is_main:  # rank 0 alone writes the log and the files
                    log.disabled = True
                    try:
                        return self._train(settings, train, dev, test)
                    finally:
                        log.disabled = False
                os.makedirs(settings.base_path, exist_ok=True)
                with training_log(settings.base_path):
                    return self._train(settings, train, dev, test)
        finally:
            self.group = None

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
        log.info(f" - device: {model.device}, precision: fp32")
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

    def _train(self, s: TrainSettings, train: List[Sentence], dev: List[Sentence],
               test: List[Sentence]) -> Dict[str, Any]:
        model = self.model
        n_lms = len(model.language_models)
        rng = np.random.default_rng(s.seed)
        best_path = os.path.join(s.base_path, "best-model.pt")
        steps_per_epoch = math.ceil(len(train) / s.batch_size)
        total_steps = s.epochs * steps_per_epoch
        warmup_steps = math.ceil(total_steps * s.warmup_fraction)
        self._log_header(s, total_steps)
        wd = [s.weight_decay] * (n_lms + 2)
        freeze_prob = model.encoder.alternate_freezing_prob if isinstance(model.encoder, MultiEncoder) else 0.0
        history: Dict[str, Any] = {"train_loss": [], "val_loss": [], "dev_score_history": [], "dev_scores": [],
                                   "test_scores": {}}
        loss_tsv = os.path.join(s.base_path, "loss.tsv")
        group = self.group
        main = group is None or group.is_main
        if main:
            with open(loss_tsv, "w", encoding="utf-8") as f:
                f.write("\t".join(["EPOCH", "TIMESTAMP", "LEARNING_RATE", "TRAIN_LOSS", "DEV_LOSS"]
                                  + [f"DEV_{m.upper()}" for m in self.metrics]) + "\n")
        self.best_model_score, self._best, self._best_model = None, None, None
        model.prepare_training()
        step = 0
        lrs = s.learning_rates
        for epoch in range(1, s.epochs + 1):
            batches = self._batches(train, s.batch_size, epoch, s.shuffle_data, s.group_by_length, rng)
            log_every = max(1, int(len(batches) / 10))
            losses = []
            bar = tqdm(batches, desc=f"epoch {epoch}/{s.epochs}", unit="batch", disable=not (s.progress and main),
                       leave=False, file=sys.stderr)
            started = time.perf_counter()
            seen = 0
            for b, batch in enumerate(bar, start=1):
                factor = linear_schedule_factor(step, total_steps, warmup_steps) if s.use_linear_scheduler else 1.0
                lrs = [lr * factor for lr in s.learning_rates]
                trainable = [lm.fine_tune for lm in model.language_models]
                if freeze_prob > 0 and rng.random() < freeze_prob:
                    trainable[int(rng.integers(0, n_lms))] = False
                try:
                    loss, _ = model.train_step(batch, lrs, wd, trainable, seed=(s.seed << 32) + step,
                                               max_grad_norm=s.max_grad_norm, group=group)
                except ValueError as e:
                    if "no update was made" not in str(e):
                        raise
                    intact = f"; the best model so far is intact at {best_path}" if self._best and s.save_best_model \
                        else ""
                    log.info(f"training stopped: epoch {epoch}, batch {b}: {e}")
                    raise TrainingError(f"epoch {epoch}, batch {b}/{len(batches)}: {e}{intact}") from None
                step += 1
                losses.append(loss)
                seen += len(batch)
                rate = seen / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{loss:.4f}", sent_s=f"{rate:.1f}")
                if b % log_every == 0:
                    log.info(f"epoch {epoch} - iter {b}/{len(batches)} - loss {np.mean(losses):.5f} - "
                             f"lr - {lrs[0]:.0e} - {rate:.1f} sentences/s")
            bar.close()
            if group:
                group.check_same(self._weights_digest(), f"the weights after epoch {epoch} (a checksum)")
                log.info(f"gradient all-reduce: {group.reduce_seconds / len(batches):.4f} s per step, "
                         f"{group.reduce_wait_seconds / len(batches):.4f} s of it not overlapped with the backward")
                group.reduce_seconds = group.reduce_wait_seconds = 0.0
            train_loss = float(np.mean(losses))
            history["train_loss"].append(train_loss)
            log_line()
            log.info(f"EPOCH {epoch} done: train loss avg {train_loss:.4f}")
            dev_loss, scores, _ = self.evaluate(dev, s.eval_batch_size) if dev else (float("nan"), {}, None)
            main_score = scores.get(self.main_metric, float("nan"))
            history["val_loss"].append(dev_loss)
            history["dev_score_history"].append(main_score)
            history["dev_scores"].append(scores)
            log.info(f"DEV: loss {dev_loss:.4f} " + " ".join(f"{m} {round(v, 4)}" for m, v in scores.items()))
            if main:
                with open(loss_tsv, "a", encoding="utf-8") as f:
                    f.write("\t".join([str(epoch), time.strftime("%H:%M:%S"), f"{lrs[0]:.4e}", f"{train_loss:.6f}",
                                       f"{dev_loss:.6f}"] + [f"{scores.get(m, float('nan')):.6f}"
                                                             for m in self.metrics]) + "\n")
            if self._best is None or _score_key(main_score) > _score_key(self.best_model_score):
                self.best_model_score = main_score
                self._best = model.checkpoint()
                self._best_model = None
                if s.save_best_model and main:
                    log.info("saving best model")
                    model.save(best_path)
            log_line()
        log.info("DONE TRAINING.")
        if self._best is not None:
            log.info(f"Best model score on dev set: {self.main_metric} {self.best_model_score}")
        if test and self._best is not None:
            self._test(test, s, history)
        return history

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
