#!/usr/bin/env python3
"""Generate the SentencePiece Unigram fixtures of tests/test_tokenizer_unigram.py (references from HF only).

Run with the reference venv (transformers 5.24, tokenizers, sentencepiece, protobuf)::

    /work/main/.venv-ref/bin/python tools/make_unigram_fixtures.py [--retrain]

Writes tests/fixtures/unigram/:

* ``trained-{8k,32k}[-bf].model``: Unigram models trained with the ``sentencepiece`` package on every
  unique sentence of the shared corpora (``nmt_nfkc``; ``-bf``: ``byte_fallback=True``), and two 4k
  models with the special pieces of ALBERT's and DeBERTa-v3's models (``trained-albert-4k``,
  ``trained-debertav3-4k``).
* ``convert-<model>-<family>.json``: tokenizer.json written by transformers' converters
  (``XLMRobertaConverter``, ``CamembertConverter``, ``AlbertConverter``, ``DebertaV2Converter``) from ``../shared/data/spm``'s
  ``test_model.model`` / ``test_ja_model.model``, with the family's special tokens added as
  transformers registers them. The precompiled charsmap is left out (``"precompiled_charsmap":
  {"sha256": ...}``): the tests put back the one of the .model file after checking its hash.
* ``auto-<model>-<family>/``: a checkpoint folder's ``tokenizer_config.json`` (no tokenizer.json), the
  backend tokenizer ``transformers.AutoTokenizer`` builds from the .model file (``backend.json``, charsmap
  left out likewise) and ``AutoTokenizer`` outputs for sample inputs (``outputs.npz``).
* ``manifest.json``: per model the sha256 of its charsmap, and per (model, family) the sha256 of the
  canonical JSON (sorted keys) of the converter's ``converted()`` tokenizer (no extra tokens), which the
  tests compare with ``multienc.engine.tokenization.convert_spm_model``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import types
from typing import Any, Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import _tok_corpora as C  # noqa: E402

OUT = os.path.join(REPO, "tests", "fixtures", "unigram")
SPM_DIR = os.path.join(C.SHARED_DATA, "spm")
FAMILIES = {  # family -> (converter, tokenizer_class, spm file name, specials)
    "xlm-roberta": ("XLMRobertaConverter", "XLMRobertaTokenizer", "sentencepiece.bpe.model"),
    "camembert": ("CamembertConverter", "CamembertTokenizer", "sentencepiece.bpe.model"),
    "albert": ("AlbertConverter", "AlbertTokenizer", "spiece.model"),
    "deberta-v2": ("DebertaV2Converter", "DebertaV2Tokenizer", "spm.model"),
}
# slow-tokenizer options per (model, family) for the converters / tokenizer_config.json
OPTIONS = {
    ("test_model", "albert"): {"do_lower_case": True, "keep_accents": False},
    ("test_ja_model", "albert"): {"do_lower_case": True, "keep_accents": True},
    ("test_model", "deberta-v2"): {"do_lower_case": False, "split_by_punct": True},
    ("test_ja_model", "deberta-v2"): {"do_lower_case": True, "split_by_punct": False},
}
FAMILY_DEFAULTS = {"albert": {"do_lower_case": True, "keep_accents": False},
                   "deberta-v2": {"do_lower_case": False, "split_by_punct": False}, "xlm-roberta": {}, "camembert": {}}
TRAINED = [("trained-8k", 8000, False), ("trained-8k-bf", 8000, True), ("trained-32k", 32000, False),
           ("trained-32k-bf", 32000, True), ("trained-albert-4k", 4000, False), ("trained-debertav3-4k", 4000, False)]
# special pieces laid out as the real checkpoints' models: albert-base-v2's spiece.model and DeBERTa-v3's spm.model
TRAIN_SPECIALS = {
    "trained-albert-4k": dict(pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"]),
    "trained-debertav3-4k": dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                                 eos_piece="[SEP]", unk_piece="[UNK]"),
}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def canonical(d: Any) -> bytes:
    return json.dumps(d, sort_keys=True, ensure_ascii=False).encode("utf-8")


def strip_charsmap(d: Any) -> Any:
    """Replace every Precompiled charsmap by its sha256."""
    if isinstance(d, dict):
        if d.get("type") == "Precompiled" and isinstance(d.get("precompiled_charsmap"), str):
            return {**d, "precompiled_charsmap": {"sha256": sha(base64.b64decode(d["precompiled_charsmap"]))}}
        return {k: strip_charsmap(v) for k, v in d.items()}
    if isinstance(d, list):
        return [strip_charsmap(v) for v in d]
    return d


def train(path: str, vocab_size: int, byte_fallback: bool, corpus: str, **extra: Any) -> None:
    import sentencepiece as spm
    prefix = path[:-len(".model")]
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, model_type="unigram", vocab_size=vocab_size,
                                   normalization_rule_name="nmt_nfkc", byte_fallback=byte_fallback,
                                   num_threads=2, minloglevel=2, **extra)
    os.remove(prefix + ".vocab")


def converter_tokenizer(model_path: str, family: str, options: Dict[str, Any]):
    """transformers' converter for the family on a stand-in slow tokenizer (the attributes it reads)."""
    import transformers.convert_slow_tokenizer as cst
    stub = types.SimpleNamespace(vocab_file=model_path, add_prefix_space=True, **options)
    conv = getattr(cst, FAMILIES[family][0])(stub)
    vocab = conv.vocab(conv.proto)
    index = {}
    for i, (piece, _) in enumerate(vocab):
        index[piece] = i
    unk = conv.unk_id(conv.proto)
    stub.convert_tokens_to_ids = lambda t: index.get(t, unk)
    return conv.converted()


def add_family_specials(tok, family: str) -> None:
    """The special tokens transformers registers for the family (as in the hub's tokenizer.json files),
    and the template with their ids."""
    from tokenizers import AddedToken, processors
    if family == "xlm-roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        mask = "<mask>"
    elif family == "camembert":  # as camembert-base's tokenizer.json
        specials = ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED", "<s>", "</s>"]
        mask = "<mask>"
    elif family == "albert":
        specials = ["[CLS]", "[SEP]", "<unk>", "<pad>"]
        mask = "[MASK]"
    else:
        specials = ["[CLS]", "[SEP]", "[UNK]", "[PAD]"]
        mask = "[MASK]"
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials]
                           + [AddedToken(mask, lstrip=True, normalized=False, special=True)])
    if family in ("xlm-roberta", "camembert"):
        return
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])


def pack(encs: List[Any]) -> Dict[str, np.ndarray]:
    """Ragged outputs as flat arrays plus lengths."""
    n = np.array([len(e["input_ids"]) for e in encs], dtype=np.int32)
    flat = lambda k: np.array([x for e in encs for x in e[k]], dtype=np.int32)  # noqa: E731
    return {"len": n, "ids": flat("input_ids"), "type_ids": flat("token_type_ids"),
            "special": flat("special_tokens_mask"),
            "offsets": np.array([o for e in encs for o in e["offset_mapping"]], dtype=np.int32).reshape(-1, 2),
            "word_ids": flat("word_ids")}


def auto_outputs(folder: str, inputs: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """AutoTokenizer (fast) outputs: ids, type ids, offsets, special-token masks, word ids."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    out: Dict[str, np.ndarray] = {}
    for name, items, kw in (("texts", inputs["texts"], {}), ("pairs", inputs["pairs"], {}),
                            ("words", inputs["words"], {"is_split_into_words": True})):
        encs = []
        for x in items:
            if name == "pairs":
                be = tok(x[0], x[1], return_offsets_mapping=True, return_special_tokens_mask=True,
                         return_token_type_ids=True)
            else:
                be = tok(x, return_offsets_mapping=True, return_special_tokens_mask=True, return_token_type_ids=True,
                         **kw)
            e = dict(be)
            e["offset_mapping"] = [list(o) for o in e["offset_mapping"]]
            e["word_ids"] = [-1 if w is None else w for w in be.word_ids()]
            encs.append(e)
        for k, v in pack(encs).items():
            out[f"{name}_{k}"] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--retrain", action="store_true", help="train again the models already in the folder")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    todo = [t for t in TRAINED if args.retrain or not os.path.exists(os.path.join(OUT, t[0] + ".model"))]
    if todo:
        texts = list(dict.fromkeys(C.corpora().texts))
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
            for t in texts:
                if t.strip():
                    f.write(t.replace("\n", " ") + "\n")
            corpus = f.name
        try:
            for name, size, bf in todo:
                print("training", name, flush=True)
                train(os.path.join(OUT, name + ".model"), size, bf, corpus, **TRAIN_SPECIALS.get(name, {}))
        finally:
            os.remove(corpus)

    models = {"test_model": os.path.join(SPM_DIR, "test_model.model"),
              "test_ja_model": os.path.join(SPM_DIR, "test_ja_model.model")}
    models.update({name: os.path.join(OUT, name + ".model") for name, _, _ in TRAINED})
    manifest: Dict[str, Any] = {"charsmap_sha256": {}, "converted_sha256": {}}
    for mname, path in models.items():
        proto = pb.ModelProto()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        manifest["charsmap_sha256"][mname] = sha(proto.normalizer_spec.precompiled_charsmap)
        for family in FAMILIES:
            options = {**FAMILY_DEFAULTS[family], **OPTIONS.get((mname, family), {})}
            tok = converter_tokenizer(path, family, options)
            manifest["converted_sha256"][f"{mname}/{family}"] = sha(canonical(json.loads(tok.to_str())))
            if not mname.startswith("test"):
                continue
            add_family_specials(tok, family)
            with open(os.path.join(OUT, f"convert-{mname}-{family}.json"), "w", encoding="utf-8") as f:
                json.dump({"options": options, "tokenizer": strip_charsmap(json.loads(tok.to_str()))}, f,
                          ensure_ascii=False)
    # checkpoint folders without tokenizer.json, as transformers 5 loads them
    inputs = C.unigram_sample_inputs()
    autos = [(m, fam) for m in ("test_model", "test_ja_model") for fam in FAMILIES] + [
        ("trained-8k-bf", "xlm-roberta"), ("trained-albert-4k", "albert"), ("trained-debertav3-4k", "deberta-v2")]
    for mname, family in autos:
        folder = os.path.join(OUT, f"auto-{mname}-{family}")
        os.makedirs(folder, exist_ok=True)
        options = {**FAMILY_DEFAULTS[family], **OPTIONS.get((mname, family), {})}
        config = {"tokenizer_class": FAMILIES[family][1], **options}
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(models[mname], os.path.join(tmp, FAMILIES[family][2]))
            shutil.copy(os.path.join(folder, "tokenizer_config.json"), tmp)
            try:
                backend = AutoTokenizer.from_pretrained(tmp).backend_tokenizer
            except Exception as e:  # transformers cannot load every combination: record why
                print(f"AutoTokenizer failed for {mname}/{family}: {type(e).__name__}: {e}")
                with open(os.path.join(folder, "error.txt"), "w", encoding="utf-8") as f:
                    f.write(f"{type(e).__name__}: {e}\n")
                continue
            with open(os.path.join(folder, "backend.json"), "w", encoding="utf-8") as f:
                json.dump({"model": mname, "tokenizer": strip_charsmap(json.loads(backend.to_str()))}, f,
                          ensure_ascii=False)
            np.savez_compressed(os.path.join(folder, "outputs.npz"), **auto_outputs(tmp, inputs))
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
