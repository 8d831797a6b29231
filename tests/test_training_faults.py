"""Training under faults (issue 17, defects 8, 9 and 10): non-finite learning rates and weights,
temporary files left by interrupted checkpoint writes, non-finite regression labels."""
import math
import os

import numpy as np
import pytest

from test_api import ELECTRA, classification_corpus

from multienc.datasets import CorpusFormatError
from multienc.datasets.readers import read_sentences
from multienc.models import LanguageModel, MultiEncoder, TextClassifier
from multienc.trainer import ModelTrainer, TrainingError


@pytest.mark.parametrize("kwargs", [{"learning_rate": float("nan")}, {"learning_rate": float("inf")},
                                    {"learning_rate": 1e39}, {"learning_rate": [float("nan")]},
                                    {"decoder_learning_rate": float("nan")}, {"decoder_learning_rate": 1e39},
                                    {"weight_decay": float("inf")}, {"warmup_fraction": float("nan")}])
def test_non_finite_rates_are_refused_before_a_run_starts(tmp_path, kwargs):
    trainer = ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), classification_corpus())
    with pytest.raises(ValueError, match="learning_rate|weight_decay|warmup_fraction|float32"):
        trainer.train(base_path=str(tmp_path), progress=False, epochs=1, **kwargs)
    assert not os.path.exists(tmp_path / "training.log"), "a rejected call started a run"


def test_a_model_with_non_finite_weights_is_never_saved_as_best(tmp_path):
    """One batch per epoch and a finite rate so large (3.4e38, below float32's maximum) that the
    first AdamW update overflows the weights to infinity; the dev metric is still a number."""
    corpus = classification_corpus()
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    trainer = ModelTrainer(clf, corpus)
    history = trainer.train(learning_rate=3.4e38, batch_size=len(corpus.train), epochs=1,
                            base_path=str(tmp_path), progress=False, seed=3)
    weights = clf.state_dict()
    assert not all(np.isfinite(w).all() for w in weights.values()), "the reproducer no longer overflows"
    assert math.isfinite(history["dev_score_history"][0])  # accuracy of NaN logits is still a number
    assert not os.path.exists(tmp_path / "best-model.pt")
    assert trainer.best_model is None
    assert "not saved as the best model" in (tmp_path / "training.log").read_text()
    with pytest.raises(TrainingError) as info:  # the next step meets the non-finite loss
        trainer.train(learning_rate=3.4e38, batch_size=len(corpus.train), epochs=2, base_path=str(tmp_path),
                      progress=False, seed=3)
    assert "intact" not in str(info.value)


def test_a_language_models_non_finite_weight_is_named_at_the_end_of_an_epoch(tmp_path):
    """The end-of-epoch check looks at every LM's weights in place and names the tensor: one NaN in
    an LM of two (the head finite) is found and named: what keeps an epoch's model from being the best."""
    clf = TextClassifier(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ELECTRA)]), 2)
    trainer = ModelTrainer(clf, classification_corpus())
    assert trainer._not_finite(0.0, 0.0, True) == ""
    enc = clf.language_models[1].encoder
    name, shape, off = enc._c.param_info()[3]
    enc._c.write_params(np.array([np.nan], np.float32), off)
    problem = trainer._not_finite(0.0, 0.0, True)
    assert problem == f"1 weight tensor(s) are not finite (e.g. lm.1.{name})"


def test_the_intact_message_names_a_file_that_predicts_finite_values(tmp_path):
    corpus = classification_corpus()
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    trainer = ModelTrainer(clf, corpus)
    trainer.train(learning_rate=1e-3, batch_size=len(corpus.train), epochs=1, base_path=str(tmp_path),
                  progress=False, seed=3)
    # continue from a good model with an overflowing rate: epoch 1 of the new run overflows
    with pytest.raises(TrainingError) as info:
        trainer.train(learning_rate=3.4e38, batch_size=len(corpus.train), epochs=3, base_path=str(tmp_path),
                      progress=False, seed=3)
    message = str(info.value)
    assert "intact" not in message or "best-model.pt" in message
    best = TextClassifier.from_checkpoint(str(tmp_path / "best-model.pt"))
    assert np.isfinite(best.predict_proba([s.text for s in corpus.dev])).all()


def test_stale_temporary_checkpoint_files_are_removed_by_the_next_run(tmp_path):
    stale = [tmp_path / ".best-model.pt.k2j3h4.tmp", tmp_path / ".training-checkpoint.pt.a8b7c6.tmp"]
    keep = [tmp_path / ".notes.tmp", tmp_path / "best-model.pt.tmp", tmp_path / ".best-model.pt.bak"]
    for p in stale + keep:
        p.write_bytes(b"half a checkpoint")
    trainer = ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), classification_corpus())
    trainer.train(learning_rate=1e-3, batch_size=8, epochs=1, base_path=str(tmp_path), progress=False)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)


@pytest.mark.parametrize("label", ["nan", "inf", "-Infinity", "NaN", "+inf", "1e999"])
def test_non_finite_regression_labels_are_refused_with_the_line(tmp_path, label):
    path = tmp_path / "train.tsv"
    path.write_text(f"a good day\t1.5\nthe second line\t{label}\n")
    with pytest.raises(CorpusFormatError, match=r"line 2: .*not a finite number") as info:
        read_sentences(path, [0], 1, "Sentence regression")
    assert info.value.line == 2 and str(path) in str(info.value)
