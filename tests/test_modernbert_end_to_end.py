"""ModernBERT through the product: LanguageModel('answerdotai/ModernBERT-base') by its hub name
(the tiny hub, served by tests/_hub_server.py), jointly with ELECTRA under DME, trained by
ModelTrainer, its checkpoint reloaded in a new offline process with identical predictions, and
sequence labeling over its byte-level tokens. (HF parity of the tokens and hidden states:
tests/test_language_model.py; of the engine: tests/test_modernbert.py; transformers loading a
save_pretrained export: benchmarks/check_export.py.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from multienc.datasets import Corpus, Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.models import SequenceTagger
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer

from _hub_server import HubServer

HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
MODERNBERT = "answerdotai/ModernBERT-base"
ELECTRA = "google/electra-base-discriminator"
GOOD = ["the movie was good", "a good and happy day", "they liked the good food", "good work by the team",
        "what a good idea", "she is a good friend", "the good news came", "good weather today"]
BAD = ["the movie was bad", "a bad and sad day", "they hated the bad food", "bad work by the team",
       "what a bad idea", "she is a bad driver", "the bad news came", "bad weather today"]


@pytest.fixture
def hub(env):
    with HubServer(HUB) as s:
        env.setenv("HF_ENDPOINT", s.url)
        yield s


def test_dme_with_electra_trains_and_reloads_offline(hub, tmp_path):
    train = [Sentence(t, 1) for t in GOOD] + [Sentence(t, 0) for t in BAD]
    dev = [Sentence(GOOD[0], 1), Sentence(BAD[0], 0)]
    corpus = Corpus("TOY good or bad", "Sentence classification", train, dev, test=dev,
                    label_map={"bad": 0, "good": 1})
    modern = LanguageModel(MODERNBERT)
    assert modern.config["model_type"] == "modernbert" and modern.max_length == 64
    clf = TextClassifier(MultiEncoder([modern, LanguageModel(ELECTRA)], combine_method="dme"), 2)
    trainer = ModelTrainer(clf, corpus)
    hist = trainer.train(learning_rate=1e-3, batch_size=4, epochs=10, shuffle_data=True, seed=3,
                         base_path=str(tmp_path), progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert (clf.predict([s.text for s in train]) == np.array([s.label for s in train])).all()
    texts = GOOD[:2] + BAD[:2] + ["", " ".join(["a long sentence past the local window"] * 4)]
    expected = trainer.best_model.predict_tags(texts, corpus.label_map)
    assert len(expected["DME scores"][0]) == 2
    script = ("import json, sys\n"
              "from multienc.task_heads import TextClassifier\n"
              "m = TextClassifier.from_checkpoint(sys.argv[1])\n"
              "print(json.dumps(m.predict_tags(json.loads(sys.argv[2]), m.label_map)))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf"), HF_ENDPOINT="http://127.0.0.1:9",
               MULTIENC_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "best-model.pt"), json.dumps(texts)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), check=True)
    got = json.loads(out.stdout)
    assert got["Predictions"] == expected["Predictions"]
    assert got["DME scores"] == expected["DME scores"]  # bit for bit


def test_sequence_tagger_on_byte_level_words(hub, tmp_path):
    """Word-level pooling over ModernBERT's byte-level tokens (words tokenized after a space, as
    add_prefix_space=True gives) learns a toy tagging task."""
    words = [["the", "cat", "sat"], ["a", "dog", "ran", "home"], ["the", "bird", "sang"], ["a", "cat", "ran"]]
    nouns = {"cat", "dog", "bird", "home"}
    sents = [Sentence(" ".join(w), [int(x in nouns) for x in w], tokens=w) for w in words]
    corpus = Corpus("TOY nouns", "Sequence labeling", sents, sents[:2], label_map={"O": 0, "N": 1})
    tagger = SequenceTagger(LanguageModel(MODERNBERT), num_classes=2)
    ModelTrainer(tagger, corpus).train(learning_rate=3e-3, batch_size=2, epochs=15, seed=1,
                                       base_path=str(tmp_path), progress=False)
    tags = tagger.predict_tags(["the dog sat"], corpus.label_map)["Predictions"][0]
    assert [t for _, t in tags] == ["O", "N", "O"]
