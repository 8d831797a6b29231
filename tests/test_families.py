"""The newer encoder families through the product with today's tokenizers: DistilBERT (WordPiece)
under its hub name in a DME MultiEncoder trained by ModelTrainer, its checkpoint reloaded offline
in a new process, sentence pairs without token types, its sinusoidal variant training with a frozen
position table, and the tokenizer hint for a checkpoint without tokenizer files.

XLM-RoBERTa and ALBERT need the SentencePiece Unigram tokenizer to get past ``LanguageModel``;
their product tests are in test_families_unigram.py. Their engine parity (forward, every gradient,
train mode) is in test_encoder.py."""
import json
import shutil

import numpy as np
import pytest

from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine import Encoder, TokenizerFileError
from multienc.engine.encoder import sinusoidal_table
from multienc.formats.safetensors import load_file, save_file
from multienc.models.inputs import build_inputs
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer

from _tiny_hub import REF, local
from _toy_tasks import BAD, GOOD, assert_reloads_offline, classification_corpus

DISTILBERT = "distilbert-base-uncased"
ELECTRA = local("google/electra-base-discriminator")


@pytest.mark.parametrize("repo_id", ["xlm-roberta-base", "albert-base-v2", DISTILBERT])
def test_hub_checkpoints_compute_hf_hidden_states_from_hf_ids(repo_id):
    """The engine on the hub-style checkpoints (XLMRobertaForMaskedLM, AlbertForMaskedLM,
    DistilBertForMaskedLM: base-model prefix plus MLM heads), fed HF's token ids (and ALBERT's token
    types), reproduces HF's hidden states for texts and pairs; this part needs no Unigram tokenizer."""
    enc = Encoder(local(repo_id))
    for kind in ("texts", "pairs"):
        ids, mask = REF[f"{repo_id}/{kind}/input_ids"], REF[f"{repo_id}/{kind}/attention_mask"]
        types = REF[f"{repo_id}/{kind}/token_type_ids"] if enc.uses_token_types else None
        if repo_id == "albert-base-v2" and kind == "pairs":
            assert types is not None and types.max() == 1
        real = mask.astype(bool)
        np.testing.assert_allclose(enc.forward(ids, mask, types)[real], REF[f"{repo_id}/{kind}/last_hidden_state"][real],
                                   atol=1e-5, rtol=0)


def test_distilbert_in_a_dme_multi_encoder_trains_and_reloads_offline(server, tmp_path):
    corpus = classification_corpus()
    distil = LanguageModel(DISTILBERT, hidden_dropout_prob=0.2)
    assert distil.config["dropout"] == 0.2 and "hidden_dropout_prob" not in distil.config  # DistilBERT's key
    assert repr(distil).endswith("layers=2, embedding_length=32, pooling='cls', fine_tune=True, "
                                 "hidden_dropout_prob=0.2, max_length=64)")
    before = distil.encoder.state_dict()
    clf = TextClassifier(MultiEncoder([distil, LanguageModel(ELECTRA)], combine_method="dme"), 2)
    trainer = ModelTrainer(clf, corpus)
    hist = trainer.train(learning_rate=1e-3, batch_size=4, epochs=8, shuffle_data=True, seed=3,
                         base_path=str(tmp_path), progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    after = distil.encoder.state_dict()
    assert all(not np.array_equal(before[n], after[n]) for n in before if n.startswith("transformer.layer.1."))
    assert_reloads_offline(trainer, tmp_path, GOOD[:2] + BAD[:2] + [""])


def test_distilbert_pairs_carry_no_token_types(server):
    """The BERT template separates the pair with [SEP]; DistilBERT has no segment embeddings, so (as
    transformers' DistilBERT tokenizer, which returns no token_type_ids) none reach the encoder."""
    distil, electra = LanguageModel(DISTILBERT), LanguageModel(ELECTRA)
    pair = ("what did they say", "the movie was good")
    distil_in, electra_in = build_inputs([distil, electra], [pair])
    tok = distil.tokenizer.encode(*pair)
    assert distil_in[0][0].tolist() == tok.ids and tok.ids.count(distil.tokenizer.token_to_id("[SEP]")) == 2
    assert distil_in[2] is None and electra_in[2] is not None
    assert distil.embed([pair]).shape == (1, 32)


def test_sinusoidal_distilbert_trains_with_a_frozen_position_table(tmp_path):
    """A sinusoidal_pos_embds checkpoint: ModelTrainer's AdamW (weight decay included) leaves the
    position table exactly as loaded while the rest trains; save_pretrained writes it back."""
    folder = tmp_path / "distil-sinusoidal"
    shutil.copytree(local(DISTILBERT), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "sinusoidal_pos_embds": True}))
    tensors = dict(load_file(str(folder / "model.safetensors"), mmap=False))
    table = sinusoidal_table(64, 32)
    tensors["distilbert.embeddings.position_embeddings.weight"] = table
    save_file(tensors, str(folder / "model.safetensors"))
    lm = LanguageModel(str(folder))
    word_before = lm.encoder.state_dict()["embeddings.word_embeddings.weight"]
    ModelTrainer(TextClassifier(lm, 2), classification_corpus()).train(
        learning_rate=1e-2, batch_size=4, epochs=2, weight_decay=0.1, base_path=str(tmp_path / "run"),
        progress=False)
    state = lm.encoder.state_dict()
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"], table)
    assert not np.array_equal(state["embeddings.word_embeddings.weight"], word_before)
    lm.save_pretrained(str(tmp_path / "export"))
    saved = load_file(str(tmp_path / "export" / "model.safetensors"))
    np.testing.assert_array_equal(saved["embeddings.position_embeddings.weight"], table)


@pytest.mark.parametrize("repo_id, weights", [(DISTILBERT, "model.safetensors"),
                                              ("xlm-roberta-base", "model.safetensors"),
                                              ("albert-base-v2", "model.safetensors")])
def test_checkpoint_without_tokenizer_files_names_one(tmp_path, repo_id, weights):
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("config.json", weights):
        shutil.copy(f"{local(repo_id)}/{name}", folder / name)
    with pytest.raises(TokenizerFileError, match=f"ships no tokenizer files.*tokenizer='{repo_id}'"):
        LanguageModel(str(folder))
    if repo_id == DISTILBERT:
        assert LanguageModel(str(folder), tokenizer=local(DISTILBERT)).embed(["a b"]).shape == (1, 32)
