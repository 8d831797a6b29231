"""Hostile and malformed files (issue 17, defects 4, 6 and 7): every reproducer the fuzzer found.

Each malformed input must be refused by its format's own error type, with a message naming the
file and the field, before anything big is allocated. Reproducers that allocated gigabytes or
crashed the interpreter run in a capped child process (``tests/_capped.py``). The minimised inputs
are also the fuzzers' regression inputs (``fuzz/regressions/``), which ``make fuzz`` replays.
"""
import json
import os
import shutil
import struct
import zipfile

import numpy as np
import pytest

from _capped import capped_error
from test_safetensors import craft, t
from test_torch_pickle import G, I, S, state_dict, tensor, tup, write_bin

from multienc.engine import Encoder, ModelConfigError, Tokenizer, TokenizerFileError
from multienc.formats import safetensors as st
from multienc.formats import torch_pickle as tp
from multienc.formats import checkpoint as ckpt
from multienc.formats.checkpoint import read_checkpoint, write_checkpoint
from multienc.formats.safetensors import SafetensorsError
from multienc.formats.torch_pickle import TorchPickleError
from multienc.formats.weights import WeightsError
from multienc.models import load_model

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "fixtures", "tiny_hub")
ELECTRA = os.path.join(TINY, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(TINY, "roberta-base", "main")
WAVE1 = os.path.join(HERE, "fixtures", "checkpoints", "wave1")
LOAD_BIN = "from multienc.formats.torch_pickle import load_file"


# ------------------------------------------------------------------ torch zip + pickle (defects 4, 6, 7)

def deep_key_pickle(depth):
    """A state dict whose one key is a tuple nested ``depth`` deep (TUPLE1 repeated)."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"Ns."


def test_deep_nesting_300k_is_refused_not_a_segfault(tmp_path):
    path = write_bin(tmp_path / "deep.bin", deep_key_pickle(300_000))
    error = capped_error(LOAD_BIN, f"load_file({path!r})")
    assert error.startswith("TorchPickleError ") and "nested deeper than" in error and path in error


def test_deep_nesting_100k_is_refused_not_a_recursion_error(tmp_path):
    path = write_bin(tmp_path / "deep.bin", deep_key_pickle(100_000))
    with pytest.raises(TorchPickleError, match="nested deeper than"):
        tp.load_file(path)


def test_nesting_through_a_shared_list_is_refused(tmp_path):
    """Depth built by filling memoised lists after they were put inside another (BINGET + APPEND):
    L0.append(L1), then L1.append(L2), ... would hide the depth from a count made at construction."""
    n = 200
    pkl = b"\x80\x02(" + b"".join(b"]q" + bytes([i]) for i in range(n))
    pkl += b"".join(b"h" + bytes([i]) + b"h" + bytes([i + 1]) + b"a" for i in range(n - 1)) + b"t."
    path = write_bin(tmp_path / "shared.bin", pkl)
    with pytest.raises(TorchPickleError, match="after it was put inside another"):
        tp.load_file(path)


def test_declared_2_5_gib_storage_in_a_small_zip_is_refused(tmp_path):
    """2.5 GiB of zeros deflated into a ~2.5 MB record: torch writes records uncompressed."""
    path = str(tmp_path / "bomb.bin")
    numel = (5 << 29) // 4
    with zipfile.ZipFile(path, "w", compresslevel=1) as z:
        z.writestr("archive/data.pkl", state_dict(S("w"), tensor("0", numel, 0, (numel,), (1,))))
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        zeros = bytes(64 << 20)
        with z.open(info, "w", force_zip64=True) as f:
            for _ in range(numel * 4 // len(zeros)):
                f.write(zeros)
    assert os.path.getsize(path) < 4 << 20
    error = capped_error(LOAD_BIN, f"load_file({path!r})", timeout=300)
    assert error.startswith("TorchPickleError ") and "archive/data/0" in error and "compressed" in error


def test_stride_zero_view_bigger_than_its_storage_is_refused(tmp_path):
    path = write_bin(tmp_path / "expand.bin", state_dict(S("w"), tensor("0", 1, 0, (65536, 65536), (0, 0))),
                     {"0": np.zeros(1, "<f4").tobytes()})
    error = capped_error(LOAD_BIN, f"load_file({path!r})")
    assert error.startswith("TorchPickleError ") and "'w'" in error and "more elements than its storage" in error


def _patched_zip(tmp_path, patch):
    """A valid hand-made torch zip whose bytes ``patch`` then edits."""
    path = write_bin(tmp_path / "z.bin", state_dict(S("w"), tensor("0", 6, 0, (6,), (1,))),
                     {"0": np.arange(6, dtype="<f4").tobytes()})
    data = bytearray(open(path, "rb").read())
    patch(data)
    open(path, "wb").write(bytes(data))
    return path


def _bad_utf8_name(data):
    z = data.find(b"archive/byteorder")
    while z >= 0:  # local and central header: flag the name UTF-8 and make it invalid
        data[z + 8] = 0xFF
        z = data.find(b"archive/byteorder", z + 1)
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        pos = data.find(sig)
        while pos >= 0:
            flag_at = pos + (6 if sig == b"PK\x03\x04" else 8)
            data[flag_at + 1] |= 0x08  # bit 11 (0x800): the name is UTF-8
            pos = data.find(sig, pos + 1)


def _unsupported_method(data):
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        data[pos + 10:pos + 12] = struct.pack("<H", 97)  # WavPack: zipfile has no decompressor
        pos = data.find(b"PK\x01\x02", pos + 1)


def _negative_offset(data):
    end = data.rfind(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<I", data, end + 16, offset + 100_000)  # central directory "after" where it is


def _zip64_offset_below_int64(data):
    """The end record turned zip64 (a zip64 end record and its locator before it) with a directory
    offset 3 * 2**62 past the directory's: every record then starts below -2**63, where zipfile's
    seek fails with a bare ValueError (found by the torch_zip fuzz target)."""
    end = data.rfind(b"PK\x05\x06")
    n, size_cd, offset_cd = struct.unpack_from("<HII", data, end + 10)
    rec64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size_cd, offset_cd + (3 << 62))
    data[end:end] = rec64 + struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)


@pytest.mark.parametrize("patch, escaped", [(_bad_utf8_name, "UnicodeDecodeError"),
                                            (_unsupported_method, "NotImplementedError"),
                                            (_negative_offset, "OSError"),
                                            (_zip64_offset_below_int64, "ValueError")])
def test_zip_level_errors_are_torch_pickle_errors(tmp_path, patch, escaped):
    path = _patched_zip(tmp_path, patch)
    with pytest.raises(TorchPickleError) as info:
        tp.load_file(path)
    assert path in str(info.value)


def test_overflowing_stride_is_a_torch_pickle_error(tmp_path):
    huge = b"\x8a\x09" + (1 << 70).to_bytes(9, "little")  # LONG1
    pid = tup(S("storage"), G("torch", "FloatStorage"), S("0"), S("cpu"), I(6)) + b"Q"
    hooks = G("collections", "OrderedDict") + b")R"
    t_ = G("torch._utils", "_rebuild_tensor_v2") + tup(pid, I(0), tup(I(1)), tup(huge), b"\x89", hooks) + b"R"
    path = write_bin(tmp_path / "stride.bin", state_dict(S("w"), t_), {"0": np.zeros(6, "<f4").tobytes()})
    with pytest.raises(TorchPickleError, match="'w'|geometry"):
        tp.load_file(path)


# ------------------------------------------------------------------ safetensors (defect 7)

@pytest.mark.parametrize("shape, what", [([0, 2 ** 63], "numpy"), ([1] * 70, "dimensions"),
                                         ([0, 2 ** 62, 4], "numpy")])
def test_shapes_numpy_cannot_hold_are_safetensors_errors(tmp_path, shape, what):
    nbytes = 4 if 0 not in shape else 0
    path = craft(tmp_path, {"w": t("F32", shape, 0, nbytes)}, b"\0" * nbytes)
    st.read_header(path)  # valid for the reference reader
    with pytest.raises(SafetensorsError, match=what) as info:
        st.load_file(path)
    assert info.value.tensor == "w" and path in str(info.value)


# ------------------------------------------------------------------ config.json (defect 7)

def _edited_copy(folder, name, edit):
    """A copy of the ELECTRA fixture in ``folder`` whose JSON file ``name`` went through ``edit``."""
    shutil.copytree(ELECTRA, folder)
    data = json.load(open(folder / name))
    edit(data)
    (folder / name).write_text(json.dumps(data))
    return str(folder)


def _model_dir(tmp_path, edit):
    return _edited_copy(tmp_path / "model", "config.json", edit)


@pytest.mark.parametrize("field, value", [
    ("hidden_size", float("inf")), ("num_hidden_layers", 2 ** 63), ("vocab_size", 2 ** 64),
    ("model_type", ["bert"]), ("layer_norm_eps", float("nan")), ("intermediate_size", "37"),
    ("max_position_embeddings", True), ("hidden_dropout_prob", 1.5), ("pad_token_id", 2 ** 40),
])
def test_config_values_are_checked_with_the_field_named(tmp_path, field, value):
    folder = _model_dir(tmp_path, lambda c: c.__setitem__(field, value))
    with pytest.raises(ModelConfigError) as info:
        Encoder(folder)
    assert os.path.join(folder, "config.json") in str(info.value) and field in str(info.value)


@pytest.mark.parametrize("repo, field, value", [
    ("distilbert-base-uncased", "dim", "32"), ("distilbert-base-uncased", "n_layers", 2 ** 40),
    ("distilbert-base-uncased", "sinusoidal_pos_embds", "yes"), ("albert-base-v2", "inner_group_num", 1 << 20),
    ("albert-base-v2", "num_hidden_groups", 0), ("sentence-transformers--all-mpnet-base-v2",
                                                  "relative_attention_num_buckets", 1.5),
    ("microsoft--deberta-v3-base", "position_buckets", 1 << 40), ("microsoft--deberta-v3-base", "pos_att_type", 7),
    ("microsoft--deberta-v3-base", "max_relative_positions", float("inf")),
    ("microsoft--deberta-v3-base", "relative_attention", "true"), ("microsoft--deberta-v3-base", "type_vocab_size", -1),
    ("answerdotai--ModernBERT-base", "local_attention", "8"), ("answerdotai--ModernBERT-base", "norm_bias", 1),
    ("answerdotai--ModernBERT-base", "layer_types", "full_attention"),
    ("answerdotai--ModernBERT-base", "rope_parameters", [10000.0]),
    ("answerdotai--ModernBERT-base", "global_attn_every_n_layers", 1 << 40),
])
def test_family_config_fields_are_checked_with_the_field_named(tmp_path, repo, field, value):
    """Each family's own keys (DistilBERT's names, ALBERT's groups, MPNet's buckets, DeBERTa's relative
    attention, ModernBERT's windows, norms and rotary bases) are type- and bound-checked like BERT's, before the engine reads them."""
    folder = tmp_path / "model"
    shutil.copytree(os.path.join(TINY, repo, "main"), folder)
    config = json.load(open(folder / "config.json"))
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(ModelConfigError) as info:
        Encoder(str(folder))
    assert str(folder / "config.json") in str(info.value) and field in str(info.value)


def test_config_sizes_must_match_the_weights_before_anything_is_allocated(tmp_path):
    """A config that declares a 2**20-word vocabulary with the fixture's 1500-word weights."""
    folder = _model_dir(tmp_path, lambda c: c.__setitem__("vocab_size", 1 << 28))
    error = capped_error("from multienc.engine import Encoder", f"Encoder({folder!r})")
    assert error.startswith("WeightsError ") and "embeddings.word_embeddings.weight" in error


# ------------------------------------------------------------------ tokenizer files (defects 6, 7)

def _tokenizer_json(tmp_path, edit):
    """The RoBERTa fixture's tokenizer as a tokenizer.json (built by hand: vocab, merges, BPE model)."""
    vocab = json.load(open(os.path.join(ROBERTA, "vocab.json"), encoding="utf-8"))
    merges = [ln for ln in open(os.path.join(ROBERTA, "merges.txt"), encoding="utf-8").read().split("\n")
              if ln and not ln.startswith("#version")]
    d = {"version": "1.0", "added_tokens": [
            {"id": vocab[t_], "content": t_, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for t_ in ("<s>", "</s>", "<unk>", "<pad>")],
         "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                               "use_regex": True},
         "post_processor": {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {t_: {"id": t_, "ids": [vocab[t_]], "tokens": [t_]}
                                               for t_ in ("<s>", "</s>")}},
         "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                   "merges": merges}}
    edit(d)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    return str(path)


def test_hand_made_tokenizer_json_is_valid(tmp_path):
    tok = Tokenizer.from_file(_tokenizer_json(tmp_path, lambda d: None))
    assert tok.decode(tok.encode("Hello world").ids) == "Hello world"


def _set(*keys, value):
    def edit(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def _first_vocab(value):
    def edit(d):
        first = next(iter(d["model"]["vocab"]))
        d["model"]["vocab"][first] = value
    return edit


def _drop_type_id(d):
    del d["post_processor"]["single"][1]["Sequence"]["type_id"]


@pytest.mark.parametrize("edit, field", [
    (_first_vocab("5"), "model.vocab"), (_first_vocab(2 ** 31), "model.vocab"), (_first_vocab(-1), "model.vocab"),
    (_set("normalizer", value="x"), "normalizer"), (_set("model", "unk_token", value=["<unk>"]), "model.unk_token"),
    (_drop_type_id, "post_processor.single[1].Sequence.type_id"), (_set("decoder", value={"type": "WordPiece",
                                                                                          "prefix": 5}),
                                                                   "decoder.prefix"),
    (_set("pre_tokenizer", value=[]), "pre_tokenizer"), (_set("added_tokens", value={"a": 1}), "added_tokens"),
    (_set("model", "merges", value=[1, 2]), "model.merges[0]"), (_set("padding", value={"pad_id": "x"}),
                                                                 "padding.pad_id"),
    (_set("post_processor", "special_tokens", "<s>", "ids", value=[2 ** 40]), "post_processor.special_tokens"),
    # found by the fuzzer (make fuzz): a post-processor without the fields its type needs
    (lambda d: d["post_processor"].pop("pair"), "post_processor.pair"),
    (_set("post_processor", value={"type": "RobertaProcessing", "sep": ["</s>", 2]}), "post_processor.cls"),
    (_set("post_processor", value={"type": "BertProcessing", "cls": ["<s>", 0]}), "post_processor.sep"),
])
def test_tokenizer_json_fields_are_checked_at_load(tmp_path, edit, field):
    path = _tokenizer_json(tmp_path, edit)
    with pytest.raises(TokenizerFileError) as info:
        Tokenizer.from_file(path)
    assert path in str(info.value) and field in str(info.value)


def test_sparse_huge_vocabulary_id_is_refused_before_allocating(tmp_path):
    path = _tokenizer_json(tmp_path, _first_vocab(2 ** 30 - 1))
    error = capped_error("from multienc.engine import Tokenizer", f"Tokenizer.from_file({path!r})")
    assert error.startswith("TokenizerFileError ") and "model.vocab" in error and str(2 ** 30 - 1) in error


def _legacy_dir(tmp_path, config_edit):
    return _edited_copy(tmp_path / "tok", "tokenizer_config.json", config_edit)


@pytest.mark.parametrize("field, value", [("model_max_length", True), ("model_max_length", 1), ("unk_token", ["[UNK]"]),
                                          ("do_lower_case", "yes"), ("model_max_length", -3),
                                          ("added_tokens_decoder", {"x": {"content": "[X]"}})])
def test_tokenizer_config_fields_are_checked_at_load(tmp_path, field, value):
    folder = _legacy_dir(tmp_path, lambda c: c.__setitem__(field, value))
    with pytest.raises(TokenizerFileError) as info:
        Tokenizer.from_pretrained(folder)
    assert "tokenizer_config.json" in str(info.value) and field in str(info.value)


def test_vocab_json_ids_are_checked(tmp_path):
    folder = tmp_path / "bpe"
    shutil.copytree(ROBERTA, folder)
    vocab = json.load(open(folder / "vocab.json", encoding="utf-8"))
    vocab["<s>"] = 2 ** 31
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="vocab.json.*'<s>'"):
        Tokenizer.from_pretrained(str(folder))


# ------------------------------------------------------------------ checkpoint metadata (defects 6, 7)

def _edited_checkpoint(tmp_path, edit, name="classifier.pt"):
    meta, tensors = read_checkpoint(os.path.join(WAVE1, name))
    meta = dict(meta)
    meta.pop("multienc_checkpoint")
    edit(meta)
    path = str(tmp_path / "edited.pt")
    write_checkpoint(path, tensors, meta)
    return path


def _json_edit(key, fn):
    def edit(meta):
        value = json.loads(meta[key])
        value = fn(value)
        meta[key] = json.dumps(value)
    return edit


def _pop(key):
    def fn(d):
        d.pop(key)
        return d
    return fn


def _put(key, value):
    def fn(d):
        d[key] = value
        return d
    return fn


@pytest.mark.parametrize("edit, field", [
    (_json_edit("language_models", lambda v: []), "language_models"),
    (_json_edit("head", _pop("num_classes")), "head.num_classes"),
    (_json_edit("head", _put("num_classes", "2")), "head.num_classes"),
    (lambda m: m.__setitem__("label_map", json.dumps(["a", "b"])), "label_map"),
    (lambda m: m.__setitem__("label_map", json.dumps({"a": "0"})), "label_map"),
    (lambda m: m.__setitem__("head", "{not json"), "head"),
    (lambda m: m.pop("language_models"), "language_models"),
    (_json_edit("head", _put("head", "Unknown")), "head.head"),
    (_json_edit("head", _put("options", {"use_crf": True})), "head.options"),
    (_json_edit("language_models", lambda v: [{**v[0], "pooling": 3}] + v[1:]), "language_models[0].pooling"),
    (_json_edit("language_models", lambda v: [{**v[0], "tokenizer_files": {"../x": ""}}] + v[1:]),
     "language_models[0].tokenizer_files"),
    (_json_edit("head", _put("multi_encoder", {"combine_method": "dme", "bogus": 1})), "head.multi_encoder"),
])
def test_checkpoint_metadata_is_checked_at_load(tmp_path, edit, field):
    path = _edited_checkpoint(tmp_path, edit)
    with pytest.raises(getattr(ckpt, "CheckpointError", ())) as info:
        load_model(path)
    assert path in str(info.value) and field in str(info.value)


@pytest.mark.parametrize("num_classes, named", [(2 ** 32, "[1, 2147483647]"), (1 << 26, "decoder.weight")])
def test_huge_num_classes_is_refused_before_allocating(tmp_path, num_classes, named):
    path = _edited_checkpoint(tmp_path, _json_edit("head", _put("num_classes", num_classes)))
    error = capped_error("from multienc.models import load_model", f"load_model({path!r})")
    assert error.startswith("CheckpointError ") and "head.num_classes" in error and named in error


def test_unmodified_checkpoints_still_load():
    for name in ("classifier.pt", "tagger.pt"):
        model = load_model(os.path.join(WAVE1, name))
        assert model.label_map


def test_checkpoint_error_types_are_value_errors():
    assert issubclass(ckpt.CheckpointError, ValueError) and issubclass(WeightsError, ValueError)


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "tokenizer.json"])
def test_json_nested_too_deep_for_the_parser_is_the_formats_error(tmp_path, name):
    folder = tmp_path / "m"
    shutil.copytree(ELECTRA, folder)
    (folder / name).write_text("[" * 100_000 + "]" * 100_000)
    error = ModelConfigError if name == "config.json" else TokenizerFileError
    with pytest.raises(error, match="nested too deep"):
        Encoder(str(folder)) if name == "config.json" else Tokenizer.from_pretrained(str(folder))
