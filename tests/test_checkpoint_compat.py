"""Checkpoints written before the package was layered (tools/make_wave1_checkpoints.py, run at
commit f541d20) load with today's code and predict what that version predicted: the same labels
and tags, and probabilities and DME scores equal up to float32 rounding (1e-6; the engine's
arithmetic may be reordered or use a more accurate erf, but a weight loaded wrongly or a head
setting lost moves them by far more)."""
import os

import numpy as np
import pytest

from multienc.task_heads import SequenceTagger, TextClassifier

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoints", "wave1")
TEXTS = ["the movie was good", "a bad and sad day", "they liked the good food", "what a bad idea",
         ("is it good?", "yes it is good"), ("was it bad?", "it was bad")]
WORDS = [["Anna", "flew", "to", "Oslo"], ["Bob", "met", "Anna", "in", "Paris", "."], ["Oslo", "is", "cold"]]


@pytest.fixture(scope="module")
def expected():
    return np.load(os.path.join(HERE, "predictions.npz"))


def test_wave1_classifier_predicts_as_before(expected, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path))
    clf = TextClassifier.from_checkpoint(os.path.join(HERE, "classifier.pt"))
    assert clf.label_map == {"bad": 1, "good": 0}
    assert clf.encoder.combine_method == "dme" and clf.encoder.use_layer_norm
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected["classifier_proba"], rtol=1e-6, atol=1e-7)
    result = clf.predict_tags(TEXTS, clf.label_map)
    np.testing.assert_allclose(np.array(result["DME scores"]), expected["classifier_dme"], rtol=1e-6, atol=1e-7)
    assert result["Predictions"] == expected["classifier_labels"].tolist()


def test_wave1_tagger_predicts_as_before(expected, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path))
    tagger = SequenceTagger.from_checkpoint(os.path.join(HERE, "tagger.pt"))
    assert (tagger.use_crf, tagger.subtoken_pooling) == (True, "first_last")
    result = tagger.predict_tags(WORDS)
    assert [t for s in result["Predictions"] for _, t in s] == expected["tagger_tags"].tolist()
    np.testing.assert_allclose(np.array([w for s in result["DME scores"] for w in s]), expected["tagger_dme"],
                               rtol=1e-6, atol=1e-7)
