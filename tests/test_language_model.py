"""LanguageModel end to end: hub names served by a real local hub (tests/_hub_server.py), the HF
cache, tokenizers and encoders against HF transformers' outputs, pooling, errors, saving.

Fixtures: tests/fixtures/tiny_hub (tiny random-weight models under the seed's hub names, with
vocabularies trained on English text) and tests/fixtures/tiny_hub_reference.npz (HF
AutoTokenizer + AutoModel outputs), both made by tools/make_tiny_hub.py.
"""
import json
import os
import shutil

import numpy as np
import pytest
import tokenizers

from multienc.encoders import LanguageModel
from multienc.engine import ModelConfigError
from multienc.hub import EntryNotFoundError, HubError, NotCachedError, RepositoryNotFoundError
from multienc.formats.safetensors import SafetensorsError, load_file, save_file
from multienc.engine.tokenization import Tokenizer, TokenizerFileError

from _hub_server import HubServer
from _tiny_hub import PAIRS, TEXTS, TINY_HUB, check_against_hf, check_save_pretrained, local

MODELS = {  # hub id -> (model_type, weight file)
    "google/electra-base-discriminator": ("electra", "model.safetensors"),
    "roberta-base": ("roberta", "model.safetensors"),
    "SpanBERT/spanbert-base-cased": ("bert", "pytorch_model.bin"),
    "nghuyong/ernie-2.0-en": ("bert", "pytorch_model.bin"),
    "nghuyong/ernie-2.0-base-en": ("ernie", "pytorch_model.bin"),
    "answerdotai/ModernBERT-base": ("modernbert", "model.safetensors"),
    "distilbert-base-uncased": ("distilbert", "model.safetensors"),
    "microsoft/deberta-base": ("deberta", "pytorch_model.bin"),
}
ELECTRA = "google/electra-base-discriminator"
SPANBERT = "SpanBERT/spanbert-base-cased"


def copy_local(tmp_path, repo_id=ELECTRA):
    dst = tmp_path / repo_id.replace("/", "--")
    shutil.copytree(local(repo_id), dst)
    return dst


@pytest.fixture
def hub_root(tmp_path):
    """The tiny hub plus: a revision v2 of the ELECTRA repo (another layer_norm_eps), a checkpoint
    without tokenizer files, and a private repository."""
    root = tmp_path / "hub"
    shutil.copytree(TINY_HUB, root)
    v2 = root / "google--electra-base-discriminator" / "v2"
    shutil.copytree(root / "google--electra-base-discriminator" / "main", v2)
    cfg = json.loads((v2 / "config.json").read_text())
    (v2 / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-5}))
    bare = root / "SpanBERT--spanbert-large-cased" / "main"
    bare.mkdir(parents=True)
    for name in ("config.json", "pytorch_model.bin"):
        shutil.copy(root / "SpanBERT--spanbert-base-cased" / "main" / name, bare / name)
    shutil.copytree(root / "roberta-base", root / "org--private-roberta")
    return root


@pytest.fixture
def server(hub_root, env):
    with HubServer(str(hub_root), private={"org/private-roberta": "hf_secret"}) as s:
        env.setenv("HF_ENDPOINT", s.url)
        yield s


# ---------------------------------------------------------------------------- by hub name


@pytest.mark.parametrize("repo_id", list(MODELS))
def test_hub_models_load_and_match_hf(server, tmp_path, repo_id):
    lm = LanguageModel(repo_id)
    model_type, weight_file = MODELS[repo_id]
    commit = server.commit(repo_id, "main")
    assert lm.model_dir == str(tmp_path / "hf_home" / "hub" / ("models--" + repo_id.replace("/", "--"))
                               / "snapshots" / commit)
    assert os.path.islink(os.path.join(lm.model_dir, weight_file))
    assert sorted(os.path.basename(p) for p in server.downloads()) == sorted(os.listdir(local(repo_id)))
    assert lm.model_id == repo_id and lm.name == repo_id.split("/")[-1]
    assert lm.config["model_type"] == model_type and lm.embedding_length == 32
    assert lm.cls_position == 0 and lm.max_length == 64  # model_max_length 64; RoBERTa: 66 - pad 1 - 1
    check_against_hf(lm, repo_id)


def test_second_load_revision_and_offline(server, env, tmp_path):
    first = LanguageModel(ELECTRA)
    server.requests.clear()
    again = LanguageModel(ELECTRA)
    assert again.model_dir == first.model_dir and server.downloads() == []
    assert [(r.method, r.path) for r in server.requests] == [("HEAD", f"/{ELECTRA}/resolve/main/config.json")]

    v2 = LanguageModel(ELECTRA, revision="v2")
    assert os.path.basename(v2.model_dir) == server.commit(ELECTRA, "v2") != os.path.basename(first.model_dir)
    assert v2.config["layer_norm_eps"] == 1e-5 and first.config["layer_norm_eps"] == 1e-12

    server.requests.clear()
    env.setenv("HF_HUB_OFFLINE", "1")
    offline = LanguageModel(ELECTRA)
    assert offline.model_dir == first.model_dir and server.requests == []
    np.testing.assert_array_equal(offline.embed(TEXTS), first.embed(TEXTS))
    with pytest.raises(NotCachedError, match="roberta-base.*missing from the cache.*HF_HUB_OFFLINE"):
        LanguageModel("roberta-base")


def test_hub_errors(server, env):
    with pytest.raises(RepositoryNotFoundError, match="nobody/nothing.*HTTP 404"):
        LanguageModel("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError, match="org/private-roberta.*HTTP 401.*set HF_TOKEN"):
        LanguageModel("org/private-roberta")
    env.setenv("HF_TOKEN", "hf_secret")
    assert LanguageModel("org/private-roberta").name == "private-roberta"


def test_cut_download_is_not_trusted(server, tmp_path):
    server.cut("pytorch_model.bin", 1000)
    with pytest.raises(HubError, match="downloading pytorch_model.bin of SpanBERT/spanbert-base-cased failed"):
        LanguageModel(SPANBERT)
    snapshot = (tmp_path / "hf_home" / "hub" / "models--SpanBERT--spanbert-base-cased" / "snapshots"
                / server.commit(SPANBERT, "main"))
    assert not (snapshot / "pytorch_model.bin").exists()
    server.cut("pytorch_model.bin", None)
    check_against_hf(LanguageModel(SPANBERT), SPANBERT)


# ---------------------------------------------------------------------------- tokenizers


def test_checkpoint_without_tokenizer_files(server, env):
    with pytest.raises(TokenizerFileError, match=r"spanbert-large-cased ships no tokenizer files.*"
                                                 r"tokenizer='bert-base-cased'"):
        LanguageModel("SpanBERT/spanbert-large-cased")
    server.requests.clear()
    lm = LanguageModel("SpanBERT/spanbert-large-cased", tokenizer=SPANBERT)
    fetched = [r.path for r in server.requests if r.path.startswith(f"/{SPANBERT}/")]
    assert fetched and not [p for p in fetched if p.endswith(("/config.json", ".bin"))]  # tokenizer files only
    check_against_hf(lm, SPANBERT)  # same weights and vocabulary as spanbert-base-cased
    with pytest.raises(EntryNotFoundError, match="spanbert-large-cased .*none of the tokenizer files tokenizer.json"):
        LanguageModel(SPANBERT, tokenizer="SpanBERT/spanbert-large-cased")
    env.setenv("HF_HUB_OFFLINE", "1")
    check_against_hf(LanguageModel("SpanBERT/spanbert-large-cased", tokenizer=SPANBERT), SPANBERT)
    with pytest.raises(NotCachedError, match="roberta-base .*none of the tokenizer files.*in the cache"):
        LanguageModel("SpanBERT/spanbert-large-cased", tokenizer="roberta-base")
    env.delenv("HF_HUB_OFFLINE")
    given = Tokenizer.from_pretrained(local(SPANBERT))
    assert LanguageModel("SpanBERT/spanbert-large-cased", tokenizer=given).tokenizer is given
    with pytest.raises(TypeError, match="tokenizer must be a Tokenizer, a hub id or a folder"):
        LanguageModel(local(SPANBERT), tokenizer=3)


def test_tokenizer_larger_than_the_model_vocabulary(tmp_path):
    folder = copy_local(tmp_path)
    with open(folder / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("".join(f"extra{i}\n" for i in range(20)))
    with pytest.raises(ValueError, match="has 1520 tokens but the model's vocabulary only 1500.*tokenizer="):
        LanguageModel(local(ELECTRA), tokenizer=str(folder))


def test_cls_last_tokenizer(tmp_path):
    """A tokenizer that appends CLS (XLNet style) gives cls_position -1: 'cls' takes the last real token."""
    vocab = {t: i for i, t in enumerate(open(os.path.join(local(ELECTRA), "vocab.txt"), encoding="utf-8")
                                        .read().splitlines())}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A [SEP] [CLS]", pair="$A [SEP] $B:1 [SEP]:1 [CLS]",
        special_tokens=[("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"])])
    tok.save(str(tmp_path / "tokenizer.json"))
    lm = LanguageModel(local(ELECTRA), tokenizer=Tokenizer.from_file(str(tmp_path / "tokenizer.json")))
    assert lm.cls_position == -1
    batch = lm.tokenize(TEXTS[:3])
    h = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    last = batch["attention_mask"].sum(1) - 1
    assert (batch["input_ids"][np.arange(3), last] == vocab["[CLS]"]).all()
    np.testing.assert_array_equal(lm.embed(TEXTS[:3]), h[np.arange(3), last])


# ---------------------------------------------------------------------------- pooling and arguments


def test_pooling():
    lm = LanguageModel(local("roberta-base"))
    batch = lm.tokenize(TEXTS)
    h = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    # embed runs its batch longest first: a row in another place of the batch, equal to rounding
    np.testing.assert_allclose(lm.embed(TEXTS), h[:, 0], rtol=0, atol=1e-6)
    lm.change_lm_pooling("mean")
    mean = lm.embed(TEXTS)
    for i, n in enumerate(batch["attention_mask"].sum(1)):
        np.testing.assert_allclose(mean[i], h[i, :n].mean(0), atol=1e-6)  # real tokens only, not padding
        np.testing.assert_allclose(lm.embed([TEXTS[i]])[0], mean[i], atol=1e-5)  # independent of the batch
    assert mean.shape == (len(TEXTS), 32) and mean.dtype == np.float32
    pairs = lm.embed([list(p) for p in PAIRS])  # 2-item lists are pairs too
    np.testing.assert_allclose(pairs, lm.embed(PAIRS), atol=0)
    lm.change_lm_pooling("word-level")
    with pytest.raises(NotImplementedError, match="word-level pooling"):
        lm.embed(TEXTS)
    with pytest.raises(ValueError, match="pooling must be one of 'cls', 'mean', 'word-level', got 'max'"):
        lm.change_lm_pooling("max")
    assert lm.pooling == "word-level"
    with pytest.raises(TypeError, match="list of texts"):
        lm.tokenize("one string")
    with pytest.raises(ValueError, match="sentences is empty"):
        lm.tokenize([])


def test_embed_runs_a_long_list_batch_by_batch(monkeypatch):
    """embed gives the sentences' vectors in the order given, each what it gets alone, while the
    encoder never sees more than batch_size of them at once (a long list needs one batch's memory)."""
    lm = LanguageModel(local("roberta-base"))
    items = TEXTS + [list(p) for p in PAIRS] + TEXTS[:2]
    alone = np.concatenate([lm.embed([s]) for s in items])
    seen = []
    forward = lm.encoder.forward
    monkeypatch.setattr(lm.encoder, "forward", lambda ids, *a, **k: seen.append(len(ids)) or forward(ids, *a, **k))
    batched = lm.embed(items, batch_size=3)
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)
    assert sum(seen) == len(items) and max(seen) == 3
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        lm.embed(items, batch_size=0)
    with pytest.raises(ValueError, match="sentences is empty"):
        lm.embed([])


def test_arguments_and_repr():
    lm = LanguageModel(local(ELECTRA), fine_tune=False, pooling="word-level", hidden_dropout_prob=0.4,
                       keep_special_tokens=False)
    assert (lm.fine_tune, lm.pooling, lm.keep_special_tokens) == (False, "word-level", False)
    assert lm.config["hidden_dropout_prob"] == 0.4 and lm.encoder.config["hidden_dropout_prob"] == 0.4
    assert lm.config["embedding_size"] == 16 and lm.config["attention_probs_dropout_prob"] == 0.1
    assert repr(lm) == (f"LanguageModel({local(ELECTRA)!r}, model_type='electra', layers=2, embedding_length=32, "
                        "pooling='word-level', fine_tune=False, hidden_dropout_prob=0.4, max_length=64)")
    for bad in (-0.1, 1.0, "0.1", True):
        with pytest.raises(ValueError, match="hidden_dropout_prob must be a number in"):
            LanguageModel(local(ELECTRA), hidden_dropout_prob=bad)
    with pytest.raises(ValueError, match="pooling must be one of"):
        LanguageModel(local(ELECTRA), pooling="CLS")


@pytest.mark.parametrize("model_max_length", [None, 512, 20])
def test_max_length_is_the_smaller_of_tokenizer_and_positions(tmp_path, model_max_length):
    folder = copy_local(tmp_path, "roberta-base")  # 66 positions, numbered from pad 1 + 1: 64 usable
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("model_max_length")
    if model_max_length is not None:
        cfg["model_max_length"] = model_max_length
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    lm = LanguageModel(str(folder))
    assert lm.max_length == min(64, model_max_length or 64)
    batch = lm.tokenize([TEXTS[-1], (TEXTS[-1], TEXTS[-1])])  # both longer than 64 tokens
    assert batch["input_ids"].shape == (2, lm.max_length) and batch["attention_mask"].all()
    assert lm.embed([TEXTS[-1]]).shape == (1, 32)


def test_positions_without_room_for_the_special_tokens(tmp_path):
    """A config whose positions cannot hold a sentence pair's special tokens (DeBERTa-v3 has no position
    table, so its weights do not catch it) is refused when the LM loads, not at its first batch."""
    folder = copy_local(tmp_path, "microsoft/deberta-v3-base")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 3}))
    assert LanguageModel(str(folder)).max_length == 3  # [CLS] A [SEP] B [SEP]: three special tokens
    (folder / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 2}))
    with pytest.raises(ModelConfigError, match="max_position_embeddings leaves 2 position.*no room for the 3 special"):
        LanguageModel(str(folder))


# ---------------------------------------------------------------------------- bad model folders


def test_bad_model_folders(tmp_path):
    folder = copy_local(tmp_path)
    weights = folder / "model.safetensors"
    tensors = dict(load_file(str(weights), mmap=False))
    data = weights.read_bytes()

    os.rename(folder / "config.json", folder / "config.bak")
    with pytest.raises(FileNotFoundError, match="google--electra-base-discriminator: local model folder has no config"):
        LanguageModel(str(folder))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match=r"config.json: cannot read the model config"):
        LanguageModel(str(folder))
    cfg = json.loads((folder / "config.bak").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(NotImplementedError, match="'gpt2' is not supported; supported model types: albert, "
                                                  "bert, camembert, deberta, deberta-v2, distilbert, electra, "
                                                  "ernie, modernbert, mpnet, roberta, xlm-roberta"):
        LanguageModel(str(folder))
    (folder / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 38}))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'electra.encoder.layer.0.intermediate.dense."
                                         r"(weight|bias)' has shape \(37.*config implies \(38"):
        LanguageModel(str(folder))
    (folder / "config.json").write_text(json.dumps(cfg))

    save_file({k: v for k, v in tensors.items() if k != "electra.encoder.layer.1.output.dense.bias"}, str(weights))
    with pytest.raises(ValueError, match="model.safetensors: missing weight tensor.*encoder.layer.1.output.dense.bias"):
        LanguageModel(str(folder))
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["electra.embeddings.word_embeddings.weight"]["dtype"] = "Q7"
    blob = json.dumps(header).encode()
    weights.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    with pytest.raises(SafetensorsError, match="model.safetensors.*Q7"):
        LanguageModel(str(folder))


# ---------------------------------------------------------------------------- saving


@pytest.mark.parametrize("repo_id", [ELECTRA, "roberta-base", SPANBERT, "distilbert-base-uncased"])
def test_save_pretrained_round_trip(tmp_path, repo_id):
    check_save_pretrained(local(repo_id), repo_id, tmp_path / "saved")
