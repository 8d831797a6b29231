"""Checkpoints written by multienc as it was before the package was layered (commit f541d20),
with the predictions that version made from them: tests/test_checkpoint_compat.py loads them
with today's code and expects the same predictions, bit for bit.

    .venv/bin/python tools/make_wave1_checkpoints.py     (run at that commit; already done)

Writes tests/fixtures/checkpoints/wave1/{classifier,tagger}.pt and predictions.npz. The models
are the tiny fixture LMs (ELECTRA + RoBERTa shapes) with a DME multi-encoder: a classifier
and a CRF sequence tagger with first_last sub-word pooling, each trained a little.
"""
import os
import tempfile

import numpy as np

from multienc.datasets import Corpus, Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.task_heads import SequenceTagger, TextClassifier
from multienc.trainer import ModelTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(ROOT, "tests", "fixtures", "tiny_hub")
LMS = [os.path.join(HUB, "google--electra-base-discriminator", "main"), os.path.join(HUB, "roberta-base", "main")]
OUT = os.path.join(ROOT, "tests", "fixtures", "checkpoints", "wave1")

TEXTS = ["the movie was good", "a bad and sad day", "they liked the good food", "what a bad idea",
         ("is it good?", "yes it is good"), ("was it bad?", "it was bad")]
WORDS = [["Anna", "flew", "to", "Oslo"], ["Bob", "met", "Anna", "in", "Paris", "."], ["Oslo", "is", "cold"]]
TAGS = {"O": 0, "B-PER": 1, "B-LOC": 2}


def lms():
    return [LanguageModel(folder) for folder in LMS]


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    train = [Sentence(t, i % 2) for i, t in enumerate(TEXTS[:4]) for _ in range(2)]
    corpus = Corpus("TOY", "Sentence classification", train, train[:4], label_map={"bad": 1, "good": 0})
    clf = TextClassifier(MultiEncoder(lms(), combine_method="dme", use_layer_norm=True), 2)
    tagged = [Sentence(" ".join(w), [TAGS["B-PER" if x in ("Anna", "Bob") else "B-LOC" if x in ("Oslo", "Paris")
                                         else "O"] for x in w], tokens=w) for w in WORDS]
    ner = Corpus("TOY NER", "Sequence labeling", tagged * 2, tagged, label_map=TAGS)
    tagger = SequenceTagger(MultiEncoder(lms(), combine_method="dme"), 3, use_crf=True, subtoken_pooling="first_last")
    with tempfile.TemporaryDirectory() as tmp:
        ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=2, base_path=tmp, seed=7,
                                        progress=False)
        ModelTrainer(tagger, ner).train(learning_rate=1e-3, batch_size=2, epochs=2, base_path=tmp + "/ner", seed=7,
                                        progress=False)
    clf.save(os.path.join(OUT, "classifier.pt"))
    tagger.save(os.path.join(OUT, "tagger.pt"))
    clf_pred = clf.predict_tags(TEXTS, clf.label_map)
    tag_pred = tagger.predict_tags(WORDS)
    np.savez(os.path.join(OUT, "predictions.npz"),
             classifier_proba=clf.predict_proba(TEXTS), classifier_dme=np.array(clf_pred["DME scores"]),
             classifier_labels=np.array(clf_pred["Predictions"]),
             tagger_tags=np.array([t for s in tag_pred["Predictions"] for _, t in s]),
             tagger_dme=np.array([w for s in tag_pred["DME scores"] for w in s]))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
