"""ModernBERT through the product: LanguageModel('answerdotai/ModernBERT-base') by its hub name
(the tiny hub, served by tests/_hub_server.py), jointly with ELECTRA under DME, trained by
ModelTrainer, its checkpoint reloaded in a new offline process with identical predictions, and
sequence labeling over its byte-level tokens. (HF parity of the tokens and hidden states:
tests/test_language_model.py; of the engine: tests/test_modernbert.py; transformers loading a
save_pretrained export: benchmarks/check_export.py.)"""
import numpy as np

from multienc.datasets import Corpus, Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.models import SequenceTagger
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer

from _toy_tasks import BAD, GOOD, assert_reloads_offline, classification_corpus

MODERNBERT = "answerdotai/ModernBERT-base"
ELECTRA = "google/electra-base-discriminator"


def test_dme_with_electra_trains_and_reloads_offline(server, tmp_path):
    corpus = classification_corpus(n_dev=2)
    modern = LanguageModel(MODERNBERT)
    assert modern.config["model_type"] == "modernbert" and modern.max_length == 64
    before = modern.encoder.state_dict()
    clf = TextClassifier(MultiEncoder([modern, LanguageModel(ELECTRA)], combine_method="dme"), 2)
    trainer = ModelTrainer(clf, corpus)
    hist = trainer.train(learning_rate=1e-3, batch_size=4, epochs=10, shuffle_data=True, seed=3,
                         base_path=str(tmp_path), progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    after = modern.encoder.state_dict()
    for name in ("embeddings.tok_embeddings.weight", "layers.1.attn.Wqkv.weight", "final_norm.weight"):
        assert not np.array_equal(before[name], after[name]), f"{name} was not trained"
    assert (clf.predict([s.text for s in corpus.train]) == np.array([s.label for s in corpus.train])).all()
    texts = GOOD[:2] + BAD[:2] + ["", " ".join(["a long sentence past the local window"] * 4)]
    expected = assert_reloads_offline(trainer, tmp_path, texts)
    assert len(expected["DME scores"][0]) == 2


def test_sequence_tagger_on_byte_level_words(server, tmp_path):
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
