#!/usr/bin/env python3
"""Generate ``csrc/tokenize/unicode_tables.c``: the Unicode data the C tokenizers use.

HuggingFace ``tokenizers`` (the reference the C code must match bit for bit) takes
its Unicode facts from several Rust crates, each frozen at its own Unicode version:

========================================  ===================================  =======
property                                  used by HF through                   Unicode
========================================  ===================================  =======
Cc/Cf/Co (clean_text), Mn (strip         ``unicode_categories`` 0.1           8.0
accents), P* (BERT punctuation)
canonical decomposition + combining      ``unicode-normalization-alignments``  9.0
class (NFD)
\\p{L}, \\p{N}, \\s of the GPT-2 regex     Oniguruma (``onig_sys``)              16.0
lowercase (full mapping), White_Space    Rust ``std`` (``char::to_lowercase``,  17.0
                                         ``char::is_whitespace``)
========================================  ===================================  =======

(The versions were established by comparing every code point against
``tokenizers``; ``tests/test_tokenizer_unicode.py`` re-checks all of them.)

The source for every version is the Unicode Character Database as compiled by
CPython's ``makeunicodedata.py`` into the C headers that the ``unicodedata2``
source distributions on PyPI ship (``unicodedata_db.h``: category, combining class,
decompositions; ``unicodetype_db.h``: case mappings). This script downloads those
sdists with pip (or reads them from ``--sdist-dir``), parses the header arrays and
writes two-stage lookup tables.

White_Space is not in the headers; per the UCD's PropList.txt it is exactly
Zs + Zl + Zp + U+0009..U+000D + U+0085, derived here from the categories.

Usage::

    python tools/gen_unicode_tables.py [--sdist-dir DIR] [--out csrc/tokenize/unicode_tables.c]
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from typing import Dict, List, Sequence, Tuple

VERSIONS = {"categories": "8.0.0", "nfd": "9.0.0.post4", "regex": "16.0.0", "case": "17.0.1"}
# Grapheme_Cluster_Break, Extended_Pictographic and Indic_Conjunct_Break (Unicode 17.0) as the JSON data
# of the pure-Python package graphemeu (its wheel), for the Precompiled normalizer's grapheme clusters.
GRAPHEME_PACKAGE = ("graphemeu", "0.10.0")
N_CP = 0x110000
BLOCK = 256

# Flag bits (keep in sync with csrc/tokenize/unicode.h).
F_CONTROL = 0x01   # Cc, Cf, Co (Unicode 8.0): deleted by BERT clean_text
F_SPACE = 0x02     # White_Space (Unicode 17.0)
F_PUNCT = 0x04     # ASCII punctuation or P* (Unicode 8.0)
F_MN = 0x08        # Mn (Unicode 8.0): removed by strip_accents
F_LETTER = 0x10    # \p{L} (Unicode 16.0)
F_NUMBER = 0x20    # \p{N} (Unicode 16.0)
F_RE_SPACE = 0x40  # \s (White_Space, Unicode 16.0)
F_CJK = 0x80       # the ranges of tokenizers' BertNormalizer `is_chinese_char`

# me_ugraph: low 4 bits a grapheme category (keep in sync with csrc/tokenize/unicode.h), then flags.
GCAT = {name: i for i, name in enumerate(
    ["Any", "CR", "LF", "Control", "Extend", "ZWJ", "Regional_Indicator", "Prepend", "SpacingMark", "L", "V", "T",
     "LV", "LVT", "Extended_Pictographic", "InCB_Consonant"])}
G_INCB_LINKER = 0x10  # Indic_Conjunct_Break=Linker (Unicode 17.0)
G_INCB_EXTEND = 0x20  # Indic_Conjunct_Break=Extend (Unicode 17.0)
G_MARK = 0x40         # General_Category M (Mn, Mc, Me), Unicode 9.0: StripAccents' is_combining_mark

# tokenizers/src/normalizers/bert.rs `is_chinese_char` (a code list, not Unicode data).
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def c_array(text: str, name: str) -> List[int]:
    """Integers of the C array ``name`` in a generated header (flattens {} records)."""
    m = re.search(r"\b" + re.escape(name) + r"\[\]\s*=\s*\{(.*?)\};", text, re.S)
    if not m:
        raise SystemExit(f"array {name} not found in header")
    return [int(x, 0) for x in re.findall(r"-?(?:0x[0-9a-fA-F]+|\d+)", m.group(1))]


def c_records(text: str, name: str, width: int) -> List[Tuple[int, ...]]:
    flat = c_array(text, name)
    return [tuple(flat[i:i + width]) for i in range(0, len(flat), width)]


def c_define(text: str, name: str) -> int:
    m = re.search(r"#define\s+" + name + r"\s+(\d+)", text)
    if not m:
        raise SystemExit(f"#define {name} not found in header")
    return int(m.group(1))


def c_strings(text: str, name: str) -> List[str]:
    m = re.search(re.escape(name) + r"\[\]\s*=\s*\{(.*?)\};", text, re.S)
    return re.findall(r'"([^"]*)"', m.group(1))


def two_level(index1: Sequence[int], index2: Sequence[int], shift: int, cp: int) -> int:
    i = index1[cp >> shift]
    return index2[(i << shift) + (cp & ((1 << shift) - 1))]


class UCD:
    """One Unicode version, read from a unicodedata2 sdist's generated headers."""

    def __init__(self, root: str):
        db = _read(_find(root, "unicodedata_db.h"))
        self.version = re.search(r'UNIDATA_VERSION "([^"]+)"', db).group(1)
        records = c_records(db, "_PyUnicode_Database_Records", 6)
        names = c_strings(db, "_PyUnicode_CategoryNames")
        shift = c_define(db, "SHIFT")
        i1, i2 = c_array(db, "index1"), c_array(db, "index2")
        rec = [records[two_level(i1, i2, shift, cp)] for cp in range(N_CP)]
        self.category = [names[r[0]] for r in rec]
        self.ccc = [r[1] for r in rec]
        dshift = c_define(db, "DECOMP_SHIFT")
        d1, d2 = c_array(db, "decomp_index1"), c_array(db, "decomp_index2")
        ddata = c_array(db, "decomp_data")
        self.canon: Dict[int, Tuple[int, ...]] = {}
        self.compat: Dict[int, Tuple[int, ...]] = {}
        for cp in range(N_CP):
            idx = two_level(d1, d2, dshift, cp)
            if idx == 0:
                continue
            count, prefix = ddata[idx] >> 8, ddata[idx] & 255
            if prefix == 0:  # canonical (no <tag>)
                self.canon[cp] = tuple(ddata[idx + 1:idx + 1 + count])
            else:  # <compat>, <font>, ...
                self.compat[cp] = tuple(ddata[idx + 1:idx + 1 + count])
        self.compose = _compositions(db)
        self._types = _find(root, "unicodetype_db.h")

    def lower(self) -> List[Tuple[int, ...]]:
        """Full lowercase mapping of every code point (SpecialCasing included, no context)."""
        t = _read(self._types)
        records = c_records(t, "_PyUnicode_TypeRecords", 6)
        ext = c_array(t, "_PyUnicode_ExtendedCase")
        shift = c_define(t, "SHIFT")
        i1, i2 = c_array(t, "index1"), c_array(t, "index2")
        out = []
        for cp in range(N_CP):
            _, lower, _, _, _, flags = records[two_level(i1, i2, shift, cp)]
            if flags & 0x4000:  # EXTENDED_CASE_MASK
                out.append(tuple(ext[(lower & 0xFFFF) + k] for k in range(lower >> 24)))
            else:
                out.append(((cp + lower) & 0xFFFFFFFF,))
        return out

    def white_space(self, cp: int) -> bool:
        return self.category[cp] in ("Zs", "Zl", "Zp") or 0x9 <= cp <= 0xD or cp == 0x85


def _compositions(db: str) -> Dict[Tuple[int, int], int]:
    """Canonical composition pairs (first, second) -> composite, from the NFC tables CPython generates
    (``nfc_first`` / ``nfc_last`` reindexing, ``comp_index`` / ``comp_data``): the primary composites,
    i.e. canonical pairs minus Full_Composition_Exclusion."""
    total_last = c_define(db, "TOTAL_LAST")
    shift = c_define(db, "COMP_SHIFT")
    first = [r for r in c_records(db, "nfc_first", 3) if r[0]]  # a {0, 0, 0} record ends each list
    last = [r for r in c_records(db, "nfc_last", 3) if r[0]]
    index, data = c_array(db, "comp_index"), c_array(db, "comp_data")
    out: Dict[Tuple[int, int], int] = {}
    for fs, fc, fi in first:
        for a in range(fs, fs + fc + 1):
            for ls, lc, li in last:
                for b in range(ls, ls + lc + 1):
                    key = (fi + a - fs) * total_last + (li + b - ls)
                    code = data[(index[key >> shift] << shift) + (key & ((1 << shift) - 1))]
                    if code:
                        out[(a, b)] = code
    return out


def grapheme_data(sdist_dir: str) -> Tuple[List[int], List[int]]:
    """Per code point: the grapheme category unicode-segmentation uses (GCAT_* below, Extended_Pictographic
    and InCB=Consonant folded in as categories of their own) and the InCB Linker / Extend bits."""
    import json
    import zipfile
    name, version = GRAPHEME_PACKAGE
    wheel = os.path.join(sdist_dir, f"{name}-{version}-py3-none-any.whl")
    if not os.path.exists(wheel):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                               f"{name}=={version}", "-d", sdist_dir])
    with zipfile.ZipFile(wheel) as z:
        gbp = json.loads(z.read("grapheme/data/grapheme_break_property.json"))
        dcp = json.loads(z.read("grapheme/data/derived_core_property.json"))

    def cps(entry) -> List[int]:
        out = list(entry["single_chars"])
        for lo, hi in entry["ranges"]:
            out.extend(range(lo, hi + 1))
        return out

    cat = [GCAT["Any"]] * N_CP
    for prop, entry in gbp.items():
        for cp in cps(entry):
            if cat[cp] != GCAT["Any"]:
                raise SystemExit(f"grapheme data: U+{cp:04X} has two categories")
            cat[cp] = GCAT[prop]
    for cp in cps(dcp["InCBConsonant"]):
        if cat[cp] != GCAT["Any"]:
            raise SystemExit(f"grapheme data: InCB=Consonant U+{cp:04X} has a break category")
        cat[cp] = GCAT["InCB_Consonant"]
    bits = [0] * N_CP
    for cp in cps(dcp["InCBLinker"]):
        bits[cp] |= G_INCB_LINKER
    for cp in cps(dcp["InCBExtend"]):
        bits[cp] |= G_INCB_EXTEND
    for cp in range(0xD800, 0xE000):  # surrogates are no Rust chars (never reach the segmenter)
        cat[cp] = GCAT["Any"]
    return cat, bits


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _find(root: str, name: str) -> str:
    hits = sorted(glob.glob(os.path.join(root, "**", name), recursive=True))
    hits = [h for h in hits if os.sep + "py2" + os.sep not in h]
    if not hits:
        raise SystemExit(f"{name} not found under {root}")
    return hits[0]


def fetch_sdist(version: str, sdist_dir: str) -> str:
    """Unpacked unicodedata2==version sdist under sdist_dir (downloaded with pip if absent)."""
    root = os.path.join(sdist_dir, f"unicodedata2-{version}")
    if not os.path.isdir(root):
        archive = os.path.join(sdist_dir, f"unicodedata2-{version}.tar.gz")
        if not os.path.exists(archive):
            subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                   "--no-binary", ":all:", f"unicodedata2=={version}", "-d", sdist_dir])
        with tarfile.open(archive) as tf:
            tf.extractall(sdist_dir)
    return root


def full_nfd(canon: Dict[int, Tuple[int, ...]], cp: int) -> Tuple[int, ...]:
    if cp not in canon:
        return (cp,)
    return tuple(x for part in canon[cp] for x in full_nfd(canon, part))


def full_nfkd(canon: Dict[int, Tuple[int, ...]], compat: Dict[int, Tuple[int, ...]], cp: int) -> Tuple[int, ...]:
    """Full compatibility decomposition (a compatibility mapping where there is one, else the canonical)."""
    m = compat.get(cp) or canon.get(cp)
    if m is None:
        return (cp,)
    return tuple(x for part in m for x in full_nfkd(canon, compat, part))


def emit_table(name: str, ctype: str, values: Sequence[int]) -> Tuple[str, str]:
    """Two-stage table: name_stage1[cp >> 8] selects a deduplicated 256-entry block."""
    blocks: Dict[Tuple[int, ...], int] = {}
    stage1, stage2 = [], []
    for b in range(0, N_CP, BLOCK):
        blk = tuple(values[b:b + BLOCK])
        if blk not in blocks:
            blocks[blk] = len(blocks)
            stage2.extend(blk)
        stage1.append(blocks[blk])
    s1type = "uint8_t" if len(blocks) < 256 else "uint16_t"
    return (f"const {s1type} {name}_stage1[{len(stage1)}] = {{{_join(stage1)}}};\n"
            f"const {ctype} {name}_stage2[{len(stage2)}] = {{{_join(stage2)}}};\n"), s1type


def _join(xs: Sequence[int]) -> str:
    out, line = [], []
    for x in xs:
        line.append(str(x))
        if len(line) == 24:
            out.append(",".join(line))
            line = []
    if line:
        out.append(",".join(line))
    return "\n" + ",\n".join(out) + "\n"


def emit_mapping(name: str, maps: Sequence[Tuple[int, ...]], identity) -> Tuple[str, str, int]:
    """Sequence mappings as (two-stage uint16 index, data): data[i] = length, then code points."""
    data = [0]
    index: Dict[Tuple[int, ...], int] = {}
    per_cp = []
    for cp in range(N_CP):
        m = maps[cp]
        if identity(cp, m):
            per_cp.append(0)
            continue
        if m not in index:
            index[m] = len(data)
            data.append(len(m))
            data.extend(m)
        per_cp.append(index[m])
    if len(data) >= 65536:
        raise SystemExit(f"{name}: mapping data too large for uint16 indices")
    table, s1type = emit_table(name, "uint16_t", per_cp)
    return table + f"const uint32_t {name}_data[{len(data)}] = {{{_join(data)}}};\n", s1type, max(
        len(m) for m in maps)


def main() -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdist-dir", help="folder holding (or receiving) the unicodedata2 sdists")
    ap.add_argument("--out", default=os.path.join(here, "csrc", "tokenize", "unicode_tables.c"))
    args = ap.parse_args()
    sdist_dir = args.sdist_dir or tempfile.mkdtemp(prefix="unicodedata2-")
    os.makedirs(sdist_dir, exist_ok=True)
    ucd = {k: UCD(fetch_sdist(v, sdist_dir)) for k, v in VERSIONS.items()}

    cat, rx, case = ucd["categories"], ucd["regex"], ucd["case"]
    flags = [0] * N_CP
    for cp in range(N_CP):
        f = 0
        c8 = cat.category[cp]
        if c8 in ("Cc", "Cf", "Co"):
            f |= F_CONTROL
        if case.white_space(cp):
            f |= F_SPACE
        if c8.startswith("P") or (cp < 128 and chr(cp) in ASCII_PUNCT):
            f |= F_PUNCT
        if c8 == "Mn":
            f |= F_MN
        c16 = rx.category[cp]
        if c16.startswith("L"):
            f |= F_LETTER
        if c16.startswith("N"):
            f |= F_NUMBER
        if rx.white_space(cp):
            f |= F_RE_SPACE
        flags[cp] = f
    for lo, hi in CJK_RANGES:
        for cp in range(lo, hi + 1):
            flags[cp] |= F_CJK

    nfd = ucd["nfd"]
    decomp = [full_nfd(nfd.canon, cp) for cp in range(N_CP)]
    kdecomp = [full_nfkd(nfd.canon, nfd.compat, cp) for cp in range(N_CP)]
    lower = case.lower()
    gcat, gbits = grapheme_data(sdist_dir)
    graph = [gcat[cp] | gbits[cp] | (G_MARK if nfd.category[cp] in ("Mn", "Mc", "Me") else 0) for cp in range(N_CP)]

    parts = [f"/* Generated by tools/gen_unicode_tables.py -- do not edit.\n"
             f" * Sources (CPython makeunicodedata.py headers in the unicodedata2 sdists):\n"
             f" *   categories (control, Mn, punctuation): Unicode {cat.version}\n"
             f" *   NFD/NFKD decompositions, compositions,\n"
             f" *   combining classes, marks (M):           Unicode {nfd.version}\n"
             f" *   regex classes (L, N, whitespace):       Unicode {rx.version}\n"
             f" *   lowercase, White_Space:                 Unicode {case.version}\n"
             f" * Grapheme break categories, Extended_Pictographic, InCB: {GRAPHEME_PACKAGE[0]} "
             f"{GRAPHEME_PACKAGE[1]} (Unicode 17.0) */\n",
             '#include "tokenize/unicode_tables.h"\n\n']
    t, s1 = emit_table("me_uflags", "uint8_t", flags)
    types = {"me_uflags": s1}
    parts.append(t)
    t, s1 = emit_table("me_uccc", "uint8_t", nfd.ccc)
    types["me_uccc"] = s1
    parts.append(t)
    t, s1, nd = emit_mapping("me_udecomp", decomp, lambda cp, m: m == (cp,))
    types["me_udecomp"] = s1
    parts.append(t)
    t, s1, nl = emit_mapping("me_ulower", lower, lambda cp, m: m == (cp,))
    types["me_ulower"] = s1
    parts.append(t)
    t, s1, nk = emit_mapping("me_ukdecomp", kdecomp, lambda cp, m: m == (cp,))
    types["me_ukdecomp"] = s1
    parts.append(t)
    t, s1 = emit_table("me_ugraph", "uint8_t", graph)
    types["me_ugraph"] = s1
    parts.append(t)
    pairs = sorted(((a << 21) | b, c) for (a, b), c in nfd.compose.items())
    parts.append(f"const uint64_t me_ucomp_keys[{len(pairs)}] = {{{_join([k for k, _ in pairs])}}};\n")
    parts.append(f"const uint32_t me_ucomp_vals[{len(pairs)}] = {{{_join([v for _, v in pairs])}}};\n")
    parts.append(f"/* stage-1 types: {types}; longest decomposition {nd}, longest lowercase {nl} */\n")
    with open(args.out, "w", encoding="ascii") as f:
        f.write("".join(parts))
    header = os.path.splitext(args.out)[0] + ".h"
    decls = "".join(f"extern const {s1} {n}_stage1[];\nextern const {'uint8_t' if n in ('me_uflags', 'me_uccc', 'me_ugraph') else 'uint16_t'} {n}_stage2[];\n"
                    for n, s1 in types.items())
    with open(header, "w", encoding="ascii") as f:
        f.write("/* Generated by tools/gen_unicode_tables.py -- do not edit. */\n"
                "#ifndef MULTIENC_UNICODE_TABLES_H\n#define MULTIENC_UNICODE_TABLES_H\n#include <stdint.h>\n"
                + decls + "extern const uint32_t me_udecomp_data[];\nextern const uint32_t me_ulower_data[];\n"
                "extern const uint32_t me_ukdecomp_data[];\n"
                "extern const uint64_t me_ucomp_keys[];\nextern const uint32_t me_ucomp_vals[];\n"
                f"#define ME_UCOMP_COUNT {len(pairs)}\n"
                f"#define ME_UDECOMP_MAX {nd}\n#define ME_ULOWER_MAX {nl}\n#define ME_UKDECOMP_MAX {nk}\n#endif\n")
    print(f"wrote {args.out}: stage-1 types {types}, max decomposition {nd}, max lowercase {nl}")


if __name__ == "__main__":
    main()
