"""How much padding prediction's batches carry, by how they are grouped (no timing).

    python benchmarks/padding.py [--batch 32]

For the research project's two LMs (the random-weight ELECTRA-base and RoBERTa-base folders of
``bench_seed_job.py``, same vocabularies as the real ones) and batches of ``--batch``: the rows
each LM runs (batch size x its longest sentence in sub-words, summed) and the real tokens among
them, on the real CoLA dev split (texts: in file order as a plain HF loop, longest first by
characters as Flair, longest first by sub-words as multienc's ``predict``) and on the real WNUT-17
dev split (word lists: longest first by words as Flair, by sub-words as multienc's tagger).
Needs ``../shared/data``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_seed_job import DEFAULT_MODELS, MODEL_NAMES, ensure_models  # noqa: E402
from real_cola import read_cola  # noqa: E402
from real_ner import read_conll  # noqa: E402


def rows_and_tokens(batches: List[List[int]], lengths: Sequence[int]) -> str:
    rows = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths)
    return f"{rows:,} rows, {real:,} real ({1 - real / rows:.0%} padding)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    from multienc.encoders import LanguageModel
    from multienc.models.inputs import chunked, encode_words, length_batches, subword_length_batches
    lms = [LanguageModel(f) for f in ensure_models(DEFAULT_MODELS, list(MODEL_NAMES))]
    texts = read_cola("dev.tsv")[0]
    words = read_conll("emerging.dev.conll")[0]
    cases: List[tuple] = [
        ("CoLA dev", texts, lambda lm, s: lm.tokenize([s]), {
            "file order": lambda: list(chunked(list(range(len(texts))), args.batch)),
            "characters, longest first": lambda: length_batches([len(t) for t in texts], args.batch),
            "sub-words, longest first": lambda: subword_length_batches(lms, texts, args.batch)}),
        ("WNUT-17 dev", words, lambda lm, w: encode_words(lm, [w]), {
            "words, longest first": lambda: length_batches([len(w) for w in words], args.batch),
            "sub-words, longest first": lambda: subword_length_batches(lms, words, args.batch, words=True)}),
    ]
    for split, items, encode, groupings in cases:
        lengths = [[int(encode(lm, s)["attention_mask"].sum()) for s in items] for lm in lms]
        print(f"{split}: {len(items)} sentences, batches of {args.batch}")
        for name, make in groupings.items():
            batches = make()
            per_lm = "; ".join(f"{lm.name}: {rows_and_tokens(batches, n)}" for lm, n in zip(lms, lengths))
            print(f"  {name}: {per_lm}")


if __name__ == "__main__":
    main()
