"""The fuzz targets: what each harness feeds its input to, and which exceptions are the format's
documented errors (anything else escaping is a finding). Runs inside the worker process only.

Each target writes the input under the file name(s) the real loader looks for, in a fresh folder,
and exercises the loader and what the loaded object is used for (a tokenizer encodes and decodes,
a model predicts), because some malformed values used to pass loading and fail only later.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import zlib
from typing import Callable, Dict, List, NamedTuple, Tuple, Type

from mutate import (mutate_bundle, mutate_bytes, mutate_json, mutate_lines, mutate_safetensors, mutate_torch_zip,
                    unpack_bundle)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
ELECTRA = os.path.join(FIXTURES, "tiny_hub", "google--electra-base-discriminator", "main")
#: the tiny hub model whose weights and tokenizer the config target loads a config.json with, by
#: its model_type (ELECTRA's for any other); fuzz/make_inputs.py seeds the target with their configs
CONFIG_MODELS = {model_type: os.path.join(FIXTURES, "tiny_hub", repo, "main") for model_type, repo in (
    ("bert", "nghuyong--ernie-2.0-en"), ("roberta", "roberta-base"), ("xlm-roberta", "xlm-roberta-base"),
    ("camembert", "camembert-base"), ("deberta", "microsoft--deberta-base"),
    ("electra", "google--electra-base-discriminator"), ("distilbert", "distilbert-base-uncased"),
    ("albert", "albert-base-v2"), ("mpnet", "sentence-transformers--all-mpnet-base-v2"),
    ("deberta-v2", "microsoft--deberta-v3-base"))}
TEXTS = ["Hello world!", "  the QUICK brown fox — jumps  ", "", "naïve café 東京 \U0001F600", ("a pair", "second")]


class Target(NamedTuple):
    seeds: List[str]                       # globs under the repository root
    mutate: Callable                       # (rnd, data, pool) -> data
    run: Callable[[bytes, str], None]      # (input, scratch folder) -> None; raises what it raises
    allowed: Callable[[], Tuple[Type[BaseException], ...]]


def _write(folder: str, files: Dict[str, bytes]) -> None:
    for name, content in files.items():
        if "/" in name or name in ("", ".", ".."):
            continue
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)


# ------------------------------------------------------------------ the loaders

def _touch(tensors) -> None:
    """Read every value: arrays, and bfloat16 bits (a reader's widen=False) widened."""
    from multienc.formats.safetensors import BFloat16Bits
    for arr in tensors.values():
        (arr.widen() if isinstance(arr, BFloat16Bits) else arr).sum()


def run_safetensors(data: bytes, folder: str) -> None:
    from multienc.formats import safetensors
    path = os.path.join(folder, "model.safetensors")
    _write(folder, {"model.safetensors": data})
    safetensors.read_header(path)
    _touch(safetensors.load_file(path))
    _touch(safetensors.load_file(path, widen_bf16=False))


def run_torch_zip(data: bytes, folder: str) -> None:
    from multienc.formats import weights
    _write(folder, {"pytorch_model.bin": data})
    _touch(weights.load_state_dict(folder))
    _touch(weights.load_state_dict(folder, widen=False))


def _use_tokenizer(tok) -> None:
    batch = tok.encode_batch(TEXTS, max_length=16)
    tok.encode_batch([t.split() for t in TEXTS if isinstance(t, str)], is_split_into_words=True)
    for row in batch["input_ids"]:
        tok.decode(row.tolist())
    for text in TEXTS[:2]:
        enc = tok.encode(text)
        enc.tokens, enc.offsets, enc.word_ids
    tok.pad_token_id, tok.cls_token_id, tok.vocab_size, tok.id_to_token(0)


def run_tokenizer_json(data: bytes, folder: str) -> None:
    from multienc.engine import Tokenizer
    _write(folder, {"tokenizer.json": data})
    _use_tokenizer(Tokenizer.from_file(os.path.join(folder, "tokenizer.json")))
    _use_tokenizer(Tokenizer.from_pretrained(folder))


def run_tokenizer_files(data: bytes, folder: str) -> None:
    from multienc.engine import Tokenizer
    _write(folder, unpack_bundle(data))
    _use_tokenizer(Tokenizer.from_pretrained(folder))
    _use_tokenizer(Tokenizer.from_pretrained(folder, add_prefix_space=True))


def run_spm_model(data: bytes, folder: str) -> None:
    """A SentencePiece model file: the reader, each family's converter (its tokenizer.json built and
    used), and a model folder with only the spm file (AutoTokenizer's path) of one family the input
    picks."""
    from multienc.engine import Tokenizer
    from multienc.engine.tokenization import SPM_FAMILIES, convert_spm_model, read_spm_model
    path = os.path.join(folder, "input.model")
    _write(folder, {"input.model": data})
    read_spm_model(path)
    for family in SPM_FAMILIES:
        converted = os.path.join(folder, f"{family}.json")
        with open(converted, "w", encoding="utf-8") as f:
            json.dump(convert_spm_model(path, family), f)
        _use_tokenizer(Tokenizer.from_file(converted))
    family = sorted(SPM_FAMILIES)[zlib.crc32(data) % len(SPM_FAMILIES)]
    name, cls = SPM_FAMILIES[family]
    checkpoint = os.path.join(folder, "checkpoint")
    os.makedirs(checkpoint)
    _write(checkpoint, {name: data, "tokenizer_config.json": json.dumps({"tokenizer_class": cls}).encode()})
    _use_tokenizer(Tokenizer.from_pretrained(checkpoint))


def run_config(data: bytes, folder: str) -> None:
    import numpy as np
    from multienc.engine import Encoder
    from multienc.models import LanguageModel
    _write(folder, {"config.json": data})
    try:
        config = json.loads(data)
    except (ValueError, RecursionError):  # the engine reports it; any model's files will do
        config = None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    model = CONFIG_MODELS.get(model_type, ELECTRA) if isinstance(model_type, str) else ELECTRA
    for name in os.listdir(model):
        if name != "config.json":
            os.symlink(os.path.join(model, name), os.path.join(folder, name))
    enc = Encoder(folder)
    ids = np.array([[1, 5, 7, 2][:enc.max_positions]], np.int64)  # an input every accepted config takes
    enc.forward(ids, train=True, seed=3)
    enc.backward(np.ones((*ids.shape, enc.hidden_size), np.float32))
    LanguageModel(folder).embed(["a b c"])


def run_checkpoint(data: bytes, folder: str) -> None:
    from multienc.models import load_model
    os.environ["MULTIENC_CACHE"] = os.path.join(folder, "cache")
    path = os.path.join(folder, "best-model.pt")
    _write(folder, {"best-model.pt": data})
    model = load_model(path)
    model.predict_tags(["the movie was good", "Anna flew to Oslo ."], model.label_map)


def run_corpus(data: bytes, folder: str) -> None:
    from multienc.datasets.readers import read_column_file, read_lines, read_sentences
    path = os.path.join(folder, "train.tsv")
    _write(folder, {"train.tsv": data})
    labels = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}
    attempts = [
        lambda: read_sentences(path, [0], 1, "Sentence regression"),
        lambda: read_sentences(path, [0, 1], -1, "Sentence classification", {"bad": 0, "good": 1}, skip_header=True,
                               skip_short_rows=True),
        lambda: read_sentences(path, [1], 0, "Sentence classification", {"a": 0, "b": 1}, delimiter=",",
                               quoting=True),
        lambda: read_column_file(path, labels, 0, 1, to_iob2=True),
        lambda: list(read_lines(path, encoding="iso-8859-1")),
    ]
    from multienc.datasets import CorpusFormatError
    errors: List[CorpusFormatError] = []
    accepted = False
    for i, attempt in enumerate(attempts):  # each reader accepts the file or refuses it with CorpusFormatError (all run)
        try:
            attempt()
            accepted = accepted or i < len(attempts) - 1  # read_lines (the last) takes any bytes
        except CorpusFormatError as e:
            errors.append(e)
    # accepted when a structured reader accepts it (the mutator then keeps it to build on): no file suits
    # all of them, and refusing whenever one refused kept the pool at the seeds
    if not accepted:
        raise errors[0]


def run_c_api(data: bytes, folder: str) -> None:
    """A sequence of calls into the C extension decided by the input's bytes: encoders and task
    models of random small configs, forward / backward / train_step with odd shapes, ids, seeds,
    rates, and the tokenizer with odd texts and lengths."""
    import numpy as np
    from multienc.engine import Encoder, TaskModel, Tokenizer, _C
    rnd = random.Random(data)
    pick = rnd.choice
    H = pick([4, 8, 12])
    config = {"model_type": pick(["bert", "roberta", "electra"]), "vocab_size": pick([1, 5, 30]), "hidden_size": H,
              "num_hidden_layers": pick([1, 2]), "num_attention_heads": pick([1, 2, 4, 3]),
              "intermediate_size": pick([1, 7]), "max_position_embeddings": pick([1, 3, 8, 40]),
              "type_vocab_size": pick([1, 2]), "pad_token_id": pick([0, 1, None]),
              "hidden_dropout_prob": pick([0.0, 0.5]), "attention_probs_dropout_prob": pick([0.0, 0.9])}
    if config["model_type"] == "electra" and rnd.random() < 0.5:
        config["embedding_size"] = pick([2, 4])
    encs = [Encoder.from_config(config, seed=rnd.randrange(5)) for _ in range(pick([1, 2]))]
    for _ in range(pick([1, 3, 6])):
        B, T = pick([0, 1, 2, 3]), pick([0, 1, 2, 5, 9, 41])
        ids = np.array([[rnd.randrange(-2, 33) for _ in range(T)] for _ in range(B)], np.int64).reshape(B, T)
        mask = np.array([[pick([0, 1, 1, 2]) for _ in range(T)] for _ in range(B)], np.int64).reshape(B, T)
        types = None if rnd.random() < 0.5 else np.array(
            [[pick([0, 1, 2, -1]) for _ in range(T)] for _ in range(B)], np.int64).reshape(B, T)
        enc = pick(encs)
        action = rnd.randrange(6)
        if action == 0:
            enc.forward(ids, mask, types, train=rnd.random() < 0.5, seed=rnd.randrange(1 << 64))
        elif action == 1:
            enc.forward(ids, mask, types)
            enc.backward(np.full((pick([B, B + 1]), T, pick([H, H - 1])), pick([1.0, float("nan")]), np.float32))
        elif action == 2:
            enc.backward(np.ones((B, T, H), np.float32))
        elif action == 3:
            tm = TaskModel(encs, pick(["concat", "mean", "dme"]) if len(encs) > 1 else "none", pick([0, 1, 2]),
                           pick([1, 2, 3]), use_layer_norm=rnd.random() < 0.3, combine_dropout=pick([0.0, 0.5]))
            K = pick([1, 2])
            pool = np.full((B, K, T), pick([0.0, 1.0, float("inf")]), np.float32)
            inputs = [(ids.astype(np.int32), mask.astype(np.int32), None, pool) for _ in encs]
            targets = np.array([rnd.randrange(-1, 4) for _ in range(B * K)], np.int32)
            lengths = np.array([rnd.randrange(0, K + 2) for _ in range(B)], np.int32)
            if rnd.random() < 0.5:
                tm.forward(inputs, targets if rnd.random() < 0.7 else None, train=rnd.random() < 0.5,
                           lengths=lengths, decode=rnd.random() < 0.3)
            else:
                rate = pick([1e-3, 0.0, float("nan"), 1e38, -1.0])
                tm.train_step(inputs, targets, [rate] * (len(encs) + 2), [0.01] * (len(encs) + 2),
                              [rnd.random() < 0.7 for _ in encs], seed=rnd.randrange(1 << 40),
                              max_grad_norm=pick([1.0, 0.0, float("inf")]), lengths=lengths)
            state = tm.adamw_state()
            tm.load_adamw_state(state if rnd.random() < 0.8 else state[:-1])
        elif action == 4:
            vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##b", "b", "ab"])}
            folder_tok = os.path.join(folder, "tok")
            os.makedirs(folder_tok, exist_ok=True)
            with open(os.path.join(folder_tok, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(vocab))
            tok = Tokenizer.from_pretrained(folder_tok)
            text = "".join(chr(pick([0x61, 0x62, 0x20, 0x0, 0xD7FF, 0x10FFFF, 0x300, 0x4E00, 0xFBD2B]))
                           for _ in range(rnd.randrange(0, 40)))
            tok.encode_batch([text, (text, text[::-1])], max_length=pick([None, 0, 1, 3, 5]),
                             add_special_tokens=rnd.random() < 0.5, num_threads=pick([None, 1, 2]))
            tok.encode(text, max_length=pick([None, 2, 4]))
        else:
            _C.encoder_param_table(dict(family=rnd.randrange(-1, 4), vocab_size=rnd.randrange(-1, 9),
                                        hidden_size=pick([0, 4, 6]), num_hidden_layers=pick([0, 1]),
                                        num_attention_heads=pick([0, 2, 4]), intermediate_size=pick([0, 3]),
                                        max_position_embeddings=pick([0, 5]), type_vocab_size=pick([0, 2]),
                                        activation=rnd.randrange(-1, 3), pad_token_id=rnd.randrange(-3, 9)))


def _bundle_mutator(name: str) -> Callable:
    return mutate_json if name.endswith(".json") else mutate_lines if name.endswith((".txt", ".codes")) else mutate_bytes


# ------------------------------------------------------------------ the table

def _allowed_formats():
    from multienc.formats.safetensors import SafetensorsError
    return (SafetensorsError,)


def _allowed_torch():
    from multienc.formats.torch_pickle import TorchPickleError
    from multienc.formats.weights import WeightsError
    return (TorchPickleError, WeightsError, FileNotFoundError)  # FileNotFoundError: the mutation hid the file


def _allowed_tokenizer():
    from multienc.engine import TokenizerFileError
    return (TokenizerFileError, NotImplementedError)  # NotImplementedError: a valid HF component multienc lacks


def _allowed_spm():
    # the reader's and converters' one error type (UnsupportedTokenizerError, for a model type other
    # than Unigram, is a TokenizerFileError too)
    from multienc.engine import TokenizerFileError
    return (TokenizerFileError,)


def _allowed_config():
    from multienc.engine import ModelConfigError, TokenizerFileError
    from multienc.formats.weights import WeightsError
    return (ModelConfigError, WeightsError, NotImplementedError, TokenizerFileError)


def _allowed_checkpoint():
    from multienc.formats.checkpoint import CheckpointError
    from multienc.formats.safetensors import SafetensorsError
    return (CheckpointError, SafetensorsError)


def _allowed_corpus():
    from multienc.datasets import CorpusFormatError
    return (CorpusFormatError,)


def _allowed_c_api():
    # the engine's documented errors (csrc/common.h's status codes: ValueError, TypeError, NotImplementedError,
    # RuntimeError for calls out of order such as backward() before forward(); argument conversion's
    # OverflowError); not MemoryError: nothing here asks for much memory
    return (ValueError, TypeError, NotImplementedError, RuntimeError, OverflowError)


TARGETS: Dict[str, Target] = {
    "safetensors": Target(["fuzz/seeds/safetensors/*", "tests/fixtures/weights/*.safetensors"],
                          mutate_safetensors, run_safetensors, _allowed_formats),
    "torch_zip": Target(["fuzz/seeds/torch_zip/*", "tests/fixtures/weights/*/*.bin", "tests/fixtures/weights/*.bin"],
                        mutate_torch_zip, run_torch_zip, _allowed_torch),
    "tokenizer_json": Target(["fuzz/seeds/tokenizer_json/*"], mutate_json, run_tokenizer_json, _allowed_tokenizer),
    "tokenizer_files": Target(["fuzz/seeds/tokenizer_files/*"],
                              lambda r, d, p: mutate_bundle(r, d, p, _bundle_mutator), run_tokenizer_files,
                              _allowed_tokenizer),
    "spm_model": Target(["fuzz/seeds/spm_model/*", "tests/fixtures/unigram/trained-albert-4k.model"], mutate_bytes,
                        run_spm_model, _allowed_spm),
    "config": Target(["fuzz/seeds/config/*"], mutate_json, run_config, _allowed_config),
    "checkpoint": Target(["fuzz/seeds/checkpoint/*"], lambda r, d, p: mutate_safetensors(r, d, p, meta_json=True),
                         run_checkpoint, _allowed_checkpoint),
    "corpus": Target(["fuzz/seeds/corpus/*"], mutate_lines, run_corpus, _allowed_corpus),
    "c_api": Target(["fuzz/seeds/c_api/*"], mutate_bytes, run_c_api, _allowed_c_api),
}


def clean(folder: str) -> None:
    """Empty the scratch folder between inputs."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
