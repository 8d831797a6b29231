"""ModelTrainer: fine-tune a task head (and its LMs) on a corpus.

    trainer = ModelTrainer(model=classifier, corpus=corpus)
    history = trainer.train(learning_rate=2e-5, batch_size=16, epochs=10, shuffle_data=True)
    trainer.best_model.predict_tags([...], corpus.label_map)

Python batches, tokenizes and logs; each training step (every LM's forward,
pooling, combination, decoder, loss, the whole backward, gradient clipping and
AdamW with per-group learning rates) is one call into C with the GIL released.
Files in ``base_path`` (as Flair users expect): ``training.log``, ``loss.tsv``
and ``best-model.pt`` (the best dev score so far; a safetensors file, see
:mod:`multienc.checkpoint`); for sequence labeling also ``test.tsv`` (CoNLL
style: token, gold tag, predicted tag; a blank line after each sentence).
"""
from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from multienc import metrics as me_metrics
from multienc import random as me_random
from multienc.batching import build_inputs
from multienc.datasets import Corpus, Sentence
from multienc.device import check_device
from multienc.multi_encoder import MultiEncoder
from multienc.optim import group_learning_rates, linear_schedule_factor
from multienc.task_heads import SequenceTagger, TextClassifier, TextRegressor, _TaskHead

__all__ = ["ModelTrainer", "TrainingError"]

log = logging.getLogger("multienc.trainer")
DASHES = "-" * 52


class TrainingError(RuntimeError):
    """Training stopped (e.g. a NaN or infinite loss); the message names the epoch and batch."""


def default_base_path(corpus: Corpus, model: _TaskHead) -> str:
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

    def __init__(self, model: _TaskHead, corpus: Corpus, optimizer: Any = "AdamW", device: Optional[str] = None):
        if not isinstance(model, _TaskHead):
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
        self._best_model: Optional[_TaskHead] = None

    # ----------------------------------------------------------------- helpers
    @property
    def best_model(self) -> Optional[_TaskHead]:
        """The model with the best dev score of the last ``train`` call (built on first access)."""
        if self._best_model is None and self._best is not None:
            from multienc.checkpoint import rebuild
            self._best_model = rebuild(*self._best, source="best model")
        return self._best_model

    def _targets(self, sentences: Sequence[Sentence]) -> np.ndarray:
        if self.corpus.is_regression:
            return np.array([s.label for s in sentences], np.float32).reshape(len(sentences), -1)
        return np.array([s.label for s in sentences], np.int32)

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

    def _step_inputs(self, batch: Sequence[Sentence]) -> Tuple[list, np.ndarray, Dict[str, Any]]:
        """(inputs, targets, extra keyword arguments) of the C model's training step for a batch."""
        if self.tagging:
            inputs, lengths, targets = self.model._tagging_inputs([s.tokens for s in batch], [s.label for s in batch])
            return inputs, targets, {"lengths": lengths}
        return build_inputs(self.model.language_models, [s.text for s in batch]), self._targets(batch), {}

    @staticmethod
    def _non_empty(split: Sequence[Sentence], which: str) -> List[Sentence]:
        kept = [s for s in split if not s.is_empty]
        skipped = len(split) - len(kept)
        if skipped:
            msg = f"skipping {skipped} empty sentence(s) of the {which} split"
            warnings.warn(msg, stacklevel=3)
            log.info(msg)
        return kept

    def evaluate(self, sentences: Sequence[Sentence], batch_size: int = 32) -> Tuple[float, Dict[str, float], np.ndarray]:
        """(mean batch loss, {metric: score}, predictions) of the current model on ``sentences``."""
        model = self.model
        if self.tagging:
            return self._evaluate_tags(sentences, batch_size)
        losses, outs = [], []
        for i in range(0, len(sentences), batch_size):
            chunk = sentences[i:i + batch_size]
            out, _, loss = model._forward([s.text for s in chunk], self._targets(chunk))
            losses.append(loss)
            outs.append(out)
        out = np.concatenate(outs) if outs else np.zeros((0, model.num_classes), np.float32)
        gold = [s.label for s in sentences]
        pred = out.argmax(1) if isinstance(model, TextClassifier) else (out[:, 0] if model.num_classes == 1 else out)
        scores = {m: me_metrics.compute(m, gold, pred.tolist(), self.corpus.task_type, self.corpus.label_map)
                  for m in self.metrics}
        return float(np.mean(losses)) if losses else float("nan"), scores, pred

    def _evaluate_tags(self, sentences: Sequence[Sentence], batch_size: int
                       ) -> Tuple[float, Dict[str, float], List[List[int]]]:
        """:meth:`evaluate` of a tagger: predictions are tag-id lists, one id per token."""
        losses, pred = [], []
        for i in range(0, len(sentences), batch_size):
            chunk = sentences[i:i + batch_size]
            tags, _, _, loss = self.model._tag_batch([s.tokens for s in chunk], [s.label for s in chunk],
                                                     label_map=self.corpus.label_map)
            losses.append(loss)
            pred += tags
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
              progress: bool = True) -> Dict[str, List[float]]:
        """Train and return the history ``{"train_loss", "val_loss", "dev_score_history", "dev_scores",
        "test_scores"}`` (per epoch; ``dev_score_history`` holds the main metric).

        ``learning_rate``: one rate, or one per LM. ``decoder_learning_rate``: rate of the new layers
        (combiner and decoder; default: the largest LM rate). ``shuffle_data`` shuffles the train
        split from the second epoch on (as the seed). ``seed`` fixes data order, dropout and, for a
        model not trained yet, the head's initial weights; same seed and thread count -> identical
        losses and weights. ``group_by_length`` batches sentences of similar length together (less
        padding). ``num_workers`` is accepted for the seed's signature and unused.
        """
        model, corpus = self.model, self.corpus
        n_lms = len(model.language_models)
        for name, v, lo in (("batch_size", batch_size, 1), ("epochs", epochs, 0), ("eval_batch_size", eval_batch_size, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not 0.0 <= warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        base_lrs = group_learning_rates(learning_rate, n_lms, decoder_learning_rate)
        if seed is None:
            seed = int(me_random.generator().integers(0, 2 ** 31))
        elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        rng = np.random.default_rng(seed)
        if model.steps_trained == 0:
            model.reset_head(np.random.default_rng([seed, 1]))

        self._check_labels(corpus.train, "train")
        self._check_labels(corpus.dev, "dev")
        self._check_labels(corpus.test, "test")
        train = self._non_empty(corpus.train, "train")
        dev = self._non_empty(corpus.dev, "dev")
        test = self._non_empty(corpus.test, "test")
        if not train:
            raise ValueError(f"{corpus.name}: the train split has no non-empty sentence")

        base_path = base_path or default_base_path(corpus, model)
        os.makedirs(base_path, exist_ok=True)
        handler = logging.FileHandler(os.path.join(base_path, "training.log"), mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        console = None
        if not log.handlers and not logging.getLogger().handlers:
            # nobody configured logging: print to stdout as Flair does (else the user's handlers get it)
            console = logging.StreamHandler(sys.stdout)
            console.setFormatter(handler.formatter)
            log.addHandler(console)
            log.propagate = False
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        model.label_map = corpus.label_map
        model.corpus_name = corpus.name
        best_path = os.path.join(base_path, "best-model.pt")
        try:
            return self._train(model, train, dev, test, base_lrs, batch_size, epochs, shuffle_data, base_path,
                               save_best_model, use_linear_scheduler, warmup_fraction, weight_decay, seed, rng,
                               group_by_length, max_grad_norm, eval_batch_size, progress, best_path)
        finally:
            log.removeHandler(handler)
            handler.close()
            if console is not None:
                log.removeHandler(console)
                log.propagate = True

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

    def _log_header(self, model: _TaskHead, epochs: int, batch_size: int, total_steps: int, base_lrs: List[float],
                    use_linear_scheduler: bool, warmup_fraction: float, weight_decay: float, shuffle: bool,
                    save_best_model: bool, seed: int) -> None:
        corpus = self.corpus
        log.info(f"Model: {model!r}")
        log.info(DASHES)
        log.info(f"Corpus: {corpus.name}")
        log.info(f"Split: {corpus.show_data_split()}")
        log.info(f"Task type: {corpus.task_type}")
        log.info(f"Evaluation: {', '.join(self.metrics)}")
        log.info(DASHES)
        log.info("Language Models:")
        for lm in model.language_models:
            log.info(f"- {lm.name}" + ("" if lm.fine_tune else " (frozen)"))
        log.info(DASHES)
        enc = model.encoder
        if isinstance(enc, MultiEncoder) and enc.num_lms > 1:
            log.info(f"Model type: multi-transformer {model.name}")
            log.info(f" - combine method: {enc.combine_method}")
            log.info(f" - combine dropout: {enc.combine_dropout}")
            log.info(f" - alternate freezing: {enc.alternate_freezing_prob}")
        else:
            log.info(f"Model type: single-transformer {model.name}")
        log.info(DASHES)
        log.info("Model parameters:")
        log.info(f" - device: {model.device}, precision: fp32")
        log.info(f" - epochs: {epochs}")
        log.info(f" - batch size: {batch_size}")
        log.info(f" - training steps: {total_steps}")
        log.info(" - optimizer: AdamW")
        names = [lm.name for lm in model.language_models] + ["combiner", "decoder"]
        log.info(" - learning rates: " + ", ".join(f"{n} {lr:g}" for n, lr in zip(names, base_lrs)))
        log.info(f" - linear schedule: {use_linear_scheduler}")
        if use_linear_scheduler:
            log.info(f" - warmup fraction: {warmup_fraction}")
        log.info(f" - weight decay: {weight_decay}")
        log.info(f" - shuffle data: {shuffle}")
        log.info(f" - save best model: {save_best_model}")
        log.info(f" - seed: {seed}")
        log.info("-" * 53)

    def _train(self, model, train, dev, test, base_lrs, batch_size, epochs, shuffle, base_path, save_best_model,
               use_linear_scheduler, warmup_fraction, weight_decay, seed, rng, group_by_length, max_grad_norm,
               eval_batch_size, progress, best_path) -> Dict[str, List[float]]:
        n_lms = len(model.language_models)
        steps_per_epoch = math.ceil(len(train) / batch_size)
        total_steps = epochs * steps_per_epoch
        warmup_steps = math.ceil(total_steps * warmup_fraction)
        self._log_header(model, epochs, batch_size, total_steps, base_lrs, use_linear_scheduler, warmup_fraction,
                         weight_decay, shuffle, save_best_model, seed)
        wd = [float(weight_decay)] * (n_lms + 2)
        freeze_prob = model.encoder.alternate_freezing_prob if isinstance(model.encoder, MultiEncoder) else 0.0
        history: Dict[str, list] = {"train_loss": [], "val_loss": [], "dev_score_history": [], "dev_scores": [],
                                    "test_scores": {}}
        loss_tsv = os.path.join(base_path, "loss.tsv")
        with open(loss_tsv, "w", encoding="utf-8") as f:
            f.write("\t".join(["EPOCH", "TIMESTAMP", "LEARNING_RATE", "TRAIN_LOSS", "DEV_LOSS"]
                              + [f"DEV_{m.upper()}" for m in self.metrics]) + "\n")
        self.best_model_score, self._best, self._best_model = None, None, None
        step = 0
        lrs = base_lrs
        for epoch in range(1, epochs + 1):
            batches = self._batches(train, batch_size, epoch, shuffle, group_by_length, rng)
            log_every = max(1, int(len(batches) / 10))
            losses = []
            bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=False,
                       file=sys.stderr)
            started = time.perf_counter()
            seen = 0
            for b, batch in enumerate(bar, start=1):
                factor = linear_schedule_factor(step, total_steps, warmup_steps) if use_linear_scheduler else 1.0
                lrs = [lr * factor for lr in base_lrs]
                trainable = [lm.fine_tune for lm in model.language_models]
                if freeze_prob > 0 and rng.random() < freeze_prob:
                    trainable[int(rng.integers(0, n_lms))] = False
                inputs, targets, extra = self._step_inputs(batch)
                try:
                    loss, _ = model._c.train_step(inputs, targets, lrs, wd, trainable,
                                                  seed=(int(seed) << 32) + step, max_grad_norm=max_grad_norm, **extra)
                except ValueError as e:
                    if "no update was made" not in str(e):
                        raise
                    intact = f"; the best model so far is intact at {best_path}" if self._best and save_best_model else ""
                    log.info(f"training stopped: epoch {epoch}, batch {b}: {e}")
                    raise TrainingError(f"epoch {epoch}, batch {b}/{len(batches)}: {e}{intact}") from None
                step += 1
                model.steps_trained += 1
                losses.append(loss)
                seen += len(batch)
                rate = seen / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{loss:.4f}", sent_s=f"{rate:.1f}")
                if b % log_every == 0:
                    log.info(f"epoch {epoch} - iter {b}/{len(batches)} - loss {np.mean(losses):.5f} - "
                             f"lr - {lrs[0]:.0e} - {rate:.1f} sentences/s")
            bar.close()
            train_loss = float(np.mean(losses))
            history["train_loss"].append(train_loss)
            log.info("-" * 53)
            log.info(f"EPOCH {epoch} done: train loss avg {train_loss:.4f}")
            dev_loss, scores, _ = self.evaluate(dev, eval_batch_size) if dev else (float("nan"), {}, None)
            main = scores.get(self.main_metric, float("nan"))
            history["val_loss"].append(dev_loss)
            history["dev_score_history"].append(main)
            history["dev_scores"].append(scores)
            log.info(f"DEV: loss {dev_loss:.4f} " + " ".join(f"{m} {round(v, 4)}" for m, v in scores.items()))
            with open(loss_tsv, "a", encoding="utf-8") as f:
                f.write("\t".join([str(epoch), time.strftime("%H:%M:%S"), f"{lrs[0]:.4e}", f"{train_loss:.6f}",
                                   f"{dev_loss:.6f}"] + [f"{scores.get(m, float('nan')):.6f}" for m in self.metrics])
                        + "\n")
            if self._best is None or _score_key(main) > _score_key(self.best_model_score):
                from multienc.checkpoint import checkpoint_metadata
                self.best_model_score = main
                self._best = (checkpoint_metadata(model), model.state_dict())
                self._best_model = None
                if save_best_model:
                    log.info("saving best model")
                    model.save(best_path)
            log.info("-" * 53)
        log.info("DONE TRAINING.")
        if self._best is not None:
            log.info(f"Best model score on dev set: {self.main_metric} {self.best_model_score}")
        if test and self._best is not None:
            log.info("Evaluating on test set...")
            log.info(f"Corpus: {self.corpus.name}")
            current = self.model
            self.model = self.best_model
            try:
                _, scores, pred = self.evaluate(test, eval_batch_size)
            finally:
                self.model = current
            history["test_scores"] = scores
            log.info("TEST set performance: " + " ".join(f"{m} {round(v, 4)}" for m, v in scores.items()))
            if self.tagging:
                self._write_test_tsv(os.path.join(base_path, "test.tsv"), test, pred)
                report = me_metrics.entity_classification_report([self._tag_names(s.label) for s in test],
                                                                 [self._tag_names(p) for p in pred])
                log.info("entity-level precision, recall and F1 per type (seqeval):\n" + report)
            elif isinstance(current, TextClassifier):
                names = None
                if self.corpus.label_map:
                    inv = {v: k for k, v in self.corpus.label_map.items()}
                    names = [inv[i] for i in range(len(inv))]
                report = me_metrics.classification_report([s.label for s in test], pred.tolist(),
                                                          labels=list(range(current.num_classes)), target_names=names)
                log.info("\n" + report)
        return history
