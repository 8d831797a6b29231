"""Toy tasks several test files train on: a good/bad sentence classification corpus, a small
CoNLL-format NER corpus, and predicting from a checkpoint in a new offline process."""
import json
import os
import subprocess
import sys

from multienc.datasets import Corpus, Sentence, read_column_file

LABELS = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}

GOOD = ["the movie was good", "a good and happy day", "they liked the good food", "good work by the team",
        "what a good idea", "she is a good friend", "the good news came", "good weather today"]
BAD = ["the movie was bad", "a bad and sad day", "they hated the bad food", "bad work by the team",
       "what a bad idea", "she is a bad driver", "the bad news came", "bad weather today"]


def classification_corpus(n_dev=4):
    train = [Sentence(t, 1) for t in GOOD] + [Sentence(t, 0) for t in BAD]
    dev = [Sentence(GOOD[i], 1) for i in range(n_dev // 2)] + [Sentence(BAD[i], 0) for i in range(n_dev // 2)]
    return Corpus("TOY good or bad", "Sentence classification", train, dev, test=dev,
                  label_map={"bad": 0, "good": 1}, evaluation_metric=["accuracy", "matthews_corr"])


NER_TRAIN = """\
John B-PER
Smith I-PER
lives O
in O
Berlin B-LOC

Mary B-PER
visited O
New B-LOC
York I-LOC
yesterday O

the O
city O
of O
Paris B-LOC
is O
big O

Anna B-PER
Lee I-PER
and O
Peter B-PER
went O
to O
Rome B-LOC

we O
met O
Carlos B-PER
in O
San B-LOC
Francisco I-LOC

London B-LOC
is O
far O
from O
Tokyo B-LOC
"""
NER_DEV = """\
Peter B-PER
lives O
in O
Paris B-LOC

Mary B-PER
Smith I-PER
visited O
Berlin B-LOC
"""


def ner_corpus(tmp_path):
    (tmp_path / "train.txt").write_text(NER_TRAIN)
    (tmp_path / "dev.txt").write_text(NER_DEV)
    train = read_column_file(tmp_path / "train.txt", LABELS, 0, 1)
    dev = read_column_file(tmp_path / "dev.txt", LABELS, 0, 1)
    return Corpus("toy NER", "Sequence labeling", train, dev, test=dev, label_map=LABELS,
                  evaluation_metric=["f1_score", "accuracy", "precision", "recall"])


def names(ids):
    inv = {v: k for k, v in LABELS.items()}
    return [inv[i] for i in ids]

def predict_in_offline_process(tmp_path, head_class, checkpoint, texts):
    """``head_class.from_checkpoint(checkpoint).predict_tags(texts, label_map)`` in a new Python process
    with the hub offline, an empty HF cache and a fresh multienc cache (the JSON result)."""
    script = (
        "import json, sys\n"
        f"from multienc.task_heads import {head_class}\n"
        f"m = {head_class}.from_checkpoint(sys.argv[1])\n"
        "print(json.dumps(m.predict_tags(json.loads(sys.argv[2]), m.label_map)))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf"),
               MULTIENC_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", script, str(checkpoint), json.dumps(texts)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), check=True)
    return json.loads(out.stdout)


def assert_reloads_offline(trainer, tmp_path, texts):
    """The trainer's best model and its ``best-model.pt`` reloaded in a new offline process predict the
    same tags and, bit for bit, the same DME scores."""
    expected = trainer.best_model.predict_tags(texts, trainer.corpus.label_map)
    got = predict_in_offline_process(tmp_path, type(trainer.best_model).__name__, tmp_path / "best-model.pt", texts)
    assert got["Predictions"] == expected["Predictions"]
    assert got["DME scores"] == expected["DME scores"]  # bit-for-bit (same floats)
    return expected
