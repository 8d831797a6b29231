"""Training and prediction speed of a model on a corpus, measured through the public API.

Used by ``multienc benchmark`` and by ``benchmarks/bench_train.py`` (which runs the same work
with HF transformers in PyTorch for comparison)::

    from multienc.benchmark import training_speed
    training_speed(classifier, demo_corpus(), batch_size=16, epochs=1)
    # {'train sentences': 200, 'epochs': 1, 'train seconds': ..., 'train sentences/s': ..., ...}
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Dict, Optional, Union

from multienc import build_info
from multienc.datasets import Corpus
from multienc.training import ModelTrainer

__all__ = ["training_speed"]


def training_speed(model, corpus: Corpus, batch_size: int = 16, epochs: int = 1, sentences: Optional[int] = None,
                   learning_rate: float = 5e-5, decoder_learning_rate: float = 1e-3,
                   seed: int = 0) -> Dict[str, Union[int, float, str]]:
    """Time ``ModelTrainer.train`` (``epochs`` epochs, each with its dev evaluation; no checkpoint
    written, no progress bar) on the first ``sentences`` training sentences (all by default), then
    ``predict`` over the dev split.

    Returns train sentences/s (training sentences x epochs / wall time of ``train``), prediction
    sentences/s (dev sentences / wall time), and the thread count and device used.
    """
    train = corpus.train if sentences is None else corpus.train[:sentences]
    timed = Corpus(corpus.name, corpus.task_type, train, corpus.dev, label_map=corpus.label_map,
                   evaluation_metric=corpus.evaluation_metric)
    trainer = ModelTrainer(model=model, corpus=timed)
    quiet = logging.NullHandler()  # the trainer then logs to its file only, not to the console
    logging.getLogger("multienc.trainer").addHandler(quiet)
    try:
        with tempfile.TemporaryDirectory() as base_path:
            started = time.perf_counter()
            trainer.train(learning_rate=learning_rate, decoder_learning_rate=decoder_learning_rate,
                          batch_size=batch_size, epochs=epochs, base_path=base_path, save_best_model=False,
                          seed=seed, progress=False)
            train_seconds = time.perf_counter() - started
    finally:
        logging.getLogger("multienc.trainer").removeHandler(quiet)
    dev = [s.text for s in corpus.dev]
    started = time.perf_counter()
    model.predict(dev, batch_size=32)
    predict_seconds = time.perf_counter() - started
    info = build_info()
    return {
        "train sentences": len(train),
        "epochs": epochs,
        "batch size": batch_size,
        "train seconds": round(train_seconds, 4),
        "train sentences/s": round(len(train) * epochs / train_seconds, 2),
        "predict sentences": len(dev),
        "predict sentences/s": round(len(dev) / predict_seconds, 2),
        "threads": int(info.get("openmp_max_threads", os.cpu_count() or 1)),
        "device": model.device,
    }
