"""XLM-RoBERTa, CamemBERT and ALBERT through the whole product, with the SentencePiece Unigram tokenizer.

On the tiny hub fixtures made by tools/make_tiny_hub.py (Unigram models trained with
sentencepiece): ``xlm-roberta-base``, ``albert-base-v2`` and ``camembert-base`` ship the model file and
the tokenizer.json of transformers' XLMRobertaConverter / AlbertConverter / CamembertConverter;
``multienc-test/{xlm-roberta,albert,camembert}-spm-only`` ship only the SentencePiece model (the
XLM-R and CamemBERT ones without a ``tokenizer_class``, so that config.json's model_type picks the
pipeline: both name the file ``sentencepiece.bpe.model``). Checked: loading by hub
name (which files are fetched) with HF's ids, token types and hidden states; a DME MultiEncoder of
DistilBERT + XLM-R + ALBERT trained by ModelTrainer whose checkpoint reloads offline with identical
predictions, also with the SentencePiece-only checkpoints (the model file travels in the
checkpoint); save_pretrained that transformers reads; the SequenceTagger's word alignment against
HF's ``word_ids`` (for the SentencePiece-only folders from tests/fixtures/tiny_hub_word_ids.json.gz,
made by tools/make_word_ids_fixture.py: transformers needs the sentencepiece package to read them)
and a tagger of the three families learning a small NER set. HF's side of the export (hidden states
of the saved folders in transformers) is ``benchmarks/check_export.py``.
"""
import base64
import json
import os

import numpy as np
import pytest

from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine.tokenization import SPM_FAMILIES
from multienc.hub import SENTENCEPIECE_FILES, TOKENIZER_FILES
from multienc.task_heads import SequenceTagger, TextClassifier
from multienc.trainer import ModelTrainer

from _alignment import check_word_alignment
from _tiny_hub import assert_reloads_from_cache, check_against_hf, check_save_pretrained, local
from _toy_tasks import BAD, GOOD, assert_reloads_offline, classification_corpus, names, ner_corpus

UNIGRAM_REPOS = ["xlm-roberta-base", "albert-base-v2", "camembert-base"]
# repositories with a SentencePiece model and no tokenizer.json -> the model file
SPM_ONLY = {"multienc-test/xlm-roberta-spm-only": "sentencepiece.bpe.model",
            "multienc-test/albert-spm-only": "spiece.model",
            "multienc-test/camembert-spm-only": "sentencepiece.bpe.model"}
WEIGHTS = {"multienc-test/camembert-spm-only": "pytorch_model.bin"}  # the others: model.safetensors
ALL_UNIGRAM = UNIGRAM_REPOS + list(SPM_ONLY)
THREE = ["distilbert-base-uncased", "xlm-roberta-base", "albert-base-v2"]


def test_hub_knows_every_sentencepiece_file_the_tokenizer_reads():
    assert set(SENTENCEPIECE_FILES) == {name for name, _ in SPM_FAMILIES.values()}
    assert set(SENTENCEPIECE_FILES) <= set(TOKENIZER_FILES)


@pytest.mark.parametrize("repo_id", ALL_UNIGRAM)
def test_unigram_hub_models_load_and_match_hf(server, env, repo_id):
    lm = LanguageModel(repo_id)
    family = next(f for f in ("albert", "camembert", "xlm-roberta") if f in repo_id)
    assert lm.config["model_type"] == family and lm.embedding_length == 32
    assert lm.cls_position == 0 and lm.max_length == 64  # XLM-R: 66 positions - pad 1 - 1
    assert lm.encoder.uses_token_types == (family == "albert")
    # the SentencePiece model is fetched only from a repository without tokenizer.json
    spm_file = SPM_ONLY.get(repo_id)
    tokenizer_file = spm_file or "tokenizer.json"
    assert sorted(os.listdir(lm.model_dir)) == sorted(["config.json", WEIGHTS.get(repo_id, "model.safetensors"),
                                                       "tokenizer_config.json", tokenizer_file])
    assert os.path.basename(lm.tokenizer.source) == tokenizer_file
    check_against_hf(lm, repo_id)
    assert_reloads_from_cache(lm, repo_id, server, env)


def test_three_families_in_a_dme_multi_encoder_train_and_reload_offline(server, tmp_path):
    corpus = classification_corpus()
    lms = [LanguageModel(r) for r in THREE]
    before = [lm.encoder.state_dict() for lm in lms]
    clf = TextClassifier(MultiEncoder(lms, combine_method="dme"), 2)
    trainer = ModelTrainer(clf, corpus)
    hist = trainer.train(learning_rate=1e-3, batch_size=4, epochs=8, shuffle_data=True, seed=3,
                         base_path=str(tmp_path), progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    for lm, old in zip(lms, before):
        new = lm.encoder.state_dict()
        assert not np.array_equal(new["embeddings.LayerNorm.weight"], old["embeddings.LayerNorm.weight"]), lm.name
    expected = assert_reloads_offline(trainer, tmp_path, GOOD[:2] + BAD[:2] + [""])
    assert np.array(expected["DME scores"]).shape == (5, 3)


def test_sentencepiece_only_checkpoints_train_and_reload_offline(server, tmp_path):
    """The SentencePiece model travels in the checkpoint (base64, byte for byte); a checkpoint of a
    folder that has tokenizer.json as well leaves the model file out."""
    lms = [LanguageModel(r) for r in SPM_ONLY]
    trainer = ModelTrainer(TextClassifier(MultiEncoder(lms, combine_method="dme"), 2), classification_corpus())
    hist = trainer.train(learning_rate=1e-3, batch_size=4, epochs=4, shuffle_data=True, seed=3,
                         base_path=str(tmp_path), progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    for lm, (repo_id, spm_file) in zip(lms, SPM_ONLY.items()):
        spec = lm.checkpoint_spec()
        assert sorted(spec["tokenizer_files"]) == ["tokenizer_config.json"]
        with open(os.path.join(local(repo_id), spm_file), "rb") as f:
            assert base64.b64decode(spec["tokenizer_binary_files"][spm_file]) == f.read()
    assert_reloads_offline(trainer, tmp_path, GOOD[:2] + BAD[:2] + [""])
    both = LanguageModel(local("xlm-roberta-base"))  # the fixture folder has the model file beside tokenizer.json
    assert "sentencepiece.bpe.model" in both.tokenizer_file_names()
    assert "tokenizer_binary_files" not in both.checkpoint_spec()


@pytest.mark.parametrize("repo_id", ALL_UNIGRAM)
def test_save_pretrained_round_trip(tmp_path, repo_id):
    """transformers reads the export (without the sentencepiece package: a SentencePiece-only
    tokenizer is saved with the tokenizer.json transformers builds from it, as transformers does)."""
    out = tmp_path / "saved"
    check_save_pretrained(local(repo_id), repo_id, out)
    if repo_id in SPM_ONLY:
        assert (out / SPM_ONLY[repo_id]).read_bytes() == open(os.path.join(local(repo_id), SPM_ONLY[repo_id]), "rb").read()
        assert json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"] == "Unigram"


@pytest.mark.parametrize("repo_id", ALL_UNIGRAM)
def test_word_alignment_matches_hf_word_ids(repo_id):
    check_word_alignment(local(repo_id))


def test_tagger_of_the_three_families_learns_and_reloads(tmp_path):
    corpus = ner_corpus(tmp_path)
    tagger = SequenceTagger(MultiEncoder([LanguageModel(local(r)) for r in THREE], combine_method="dme"),
                            corpus.num_classes)
    out = tmp_path / "run"
    ModelTrainer(tagger, corpus).train(learning_rate=2e-3, batch_size=2, epochs=20, shuffle_data=True,
                                       base_path=str(out), seed=5, progress=False)
    gold = [names(s.label) for s in corpus.train]
    pred = tagger.predict([s.tokens for s in corpus.train])
    assert [names(p) for p in pred] == gold
    reloaded = SequenceTagger.from_checkpoint(str(out / "best-model.pt"))
    assert [list(p) for p in reloaded.predict([s.tokens for s in corpus.dev])] == \
        [list(p) for p in tagger.predict([s.tokens for s in corpus.dev])]
