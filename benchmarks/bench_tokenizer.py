"""Tokens per second of multienc's C tokenizers vs HuggingFace tokenizers on the shared corpora.

For each real vocabulary in ../shared/data/vocab (bert-base-uncased, bert-base-cased,
roberta-base), for SentencePiece Unigram tokenizers (the 32k model trained on the corpora,
tests/fixtures/unigram, as transformers' XLM-R and ALBERT converters write its tokenizer.json, and
SentencePiece's test_model as the DeBERTa-v2 converter writes it), BERTweet's fastBPE (the tiny hub's
``vinai/bertweet-base`` files: a small vocabulary, against transformers' Python BertweetTokenizer,
the only one transformers has) and every unique sentence of the shared corpora, in one run:

* single-thread: one ``encode(text)`` call per sentence (multienc ``Tokenizer.encode`` vs
  ``tokenizers.Tokenizer.encode``, the backend ``transformers.AutoTokenizer`` builds);
* batched: ``encode_batch`` over batches of ``--batch-size`` sentences, truncated to 512 tokens
  and padded to the longest in each batch, as a trainer uses it (multienc: C + OpenMP with
  the GIL released, returning numpy arrays; HF: Rust + rayon with ``enable_truncation(512)``
  and ``enable_padding()``, returning Encoding objects), on all threads and, for multienc,
  on one thread.

Tokens counted are those HF produces without truncation or padding (special tokens included);
both sides produce the same.

    PYTHONPATH=. python benchmarks/bench_tokenizer.py [--limit N] [--repeat R] [--batch-size B] [--only all|vocab|unigram|fastbpe]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
import sys
import time
from types import SimpleNamespace
from typing import Callable, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import _tok_corpora as C  # noqa: E402

from machine_info import cpu_name  # noqa: E402
from multienc import build_info  # noqa: E402
from multienc.engine.tokenization import Tokenizer, convert_spm_model  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "unigram")
# (row name, SentencePiece model, converter family)
UNIGRAMS = [("unigram 32k, XLM-R converter", os.path.join(FIXTURES, "trained-32k.model"), "xlm-roberta"),
            ("unigram 32k, ALBERT converter", os.path.join(FIXTURES, "trained-32k.model"), "albert"),
            ("unigram test_model, DeBERTa-v2 converter", os.path.join(C.SHARED_DATA, "spm", "test_model.model"),
             "deberta-v2")]
FASTBPE = "fastBPE, tiny BERTweet files (HF: Python tokenizer)"
BERTWEET = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "tiny_hub", "vinai--bertweet-base", "main")


class PythonBackend:
    """transformers' Python tokenizer behind the calls this script makes of a tokenizers.Tokenizer."""

    def __init__(self, tok) -> None:
        self.tok, self.max_length, self.padding = tok, None, False

    def no_truncation(self) -> None:
        self.max_length = None

    def no_padding(self) -> None:
        self.padding = False

    def enable_truncation(self, max_length: int) -> None:
        self.max_length = max_length

    def enable_padding(self, pad_id: int) -> None:
        self.padding = True

    def encode(self, text: str) -> SimpleNamespace:
        return SimpleNamespace(ids=self.tok(text)["input_ids"])

    def encode_batch(self, texts: List[str]) -> List[SimpleNamespace]:
        out = self.tok(texts, truncation=self.max_length is not None, max_length=self.max_length,
                       padding=self.padding)
        return [SimpleNamespace(ids=ids) for ids in out["input_ids"]]


def load_pairs(name: str, tmp: str):
    """(ours, HF backend) for a vocabulary folder or a Unigram row; None if its files are absent."""
    import tokenizers
    import transformers

    for row, model, family in UNIGRAMS:
        if row == name:
            if not os.path.exists(model):
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = convert_spm_model(model, family)
            path = os.path.join(tmp, "tokenizer.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(d, f)
            return Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(path)
    if name == FASTBPE:
        return Tokenizer.from_pretrained(BERTWEET), PythonBackend(transformers.AutoTokenizer.from_pretrained(BERTWEET))
    folder = C.vocab_dir(name)
    if folder is None:
        return None
    return Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="use only the first N unique sentences")
    ap.add_argument("--repeat", type=int, default=3, help="best of R runs per measurement")
    ap.add_argument("--batch-size", type=int, default=1024, help="sentences per encode_batch call")
    ap.add_argument("--only", choices=["all", "vocab", "unigram", "fastbpe"], default="all",
                    help="rows: the real vocabularies, the Unigram tokenizers, BERTweet's fastBPE, or all")
    args = ap.parse_args()

    import tokenizers
    import transformers

    texts: List[str] = list(dict.fromkeys(C.corpora().texts))
    if args.limit:
        texts = texts[:args.limit]
    if not texts:
        sys.exit("no corpora under ../shared/data")
    threads = build_info()["openmp_max_threads"]
    print(f"{len(texts)} unique sentences from {len(C.corpora().files)} corpus files, batches of {args.batch_size}; "
          f"{os.cpu_count()} CPUs, OpenMP threads {threads}; tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}; {cpu_name()}")
    print()
    print("| tokenizer | tokens | single-thread ours | single-thread HF | ratio | "
          "batched ours (all threads) | batched ours (1 thread) | batched HF (all threads) | ratio |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|")
    tmp = tempfile.mkdtemp(prefix="bench-tok-")
    names = (list(C.VOCABS) if args.only in ("all", "vocab") else []) + \
        ([row for row, _, _ in UNIGRAMS] if args.only in ("all", "unigram") else []) + \
        ([FASTBPE] if args.only in ("all", "fastbpe") else [])
    for name in names:
        loaded = load_pairs(name, tmp)
        if loaded is None:
            print(f"| {name} | (absent) |")
            continue
        ours, hf = loaded
        hf.no_truncation()
        hf.no_padding()
        n_tok = sum(len(e.ids) for e in hf.encode_batch(texts))

        t_ours1 = best_of(lambda: [ours.encode(t) for t in texts], args.repeat)
        t_hf1 = best_of(lambda: [hf.encode(t) for t in texts], args.repeat)
        batches = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
        t_oursb = best_of(lambda: [ours.encode_batch(b, max_length=512) for b in batches], args.repeat)
        t_oursb1 = best_of(lambda: [ours.encode_batch(b, max_length=512, num_threads=1) for b in batches],
                           args.repeat)
        hf.enable_truncation(max_length=512)
        hf.enable_padding(pad_id=ours.pad_token_id or 0)
        t_hfb = best_of(lambda: [hf.encode_batch(b) for b in batches], args.repeat)

        def rate(t: float) -> str:
            return f"{n_tok / t / 1e6:.2f} M/s"

        print(f"| {name} | {n_tok} | {rate(t_ours1)} | {rate(t_hf1)} | {t_hf1 / t_ours1:.2f}x | "
              f"{rate(t_oursb)} | {rate(t_oursb1)} | {rate(t_hfb)} | {t_hfb / t_oursb:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
