"""Readers for the corpora's original file formats.

Every reader reports bad input as :class:`CorpusFormatError`, naming the file
and the (1-based) line. One reader serves every corpus of its format:

* :func:`iter_rows` / :func:`read_sentences`: delimited rows (GLUE and SICK TSVs
  without quoting, CSV files with quoting, custom ``CSVCorpus`` files);
* :func:`read_column_file`: one token per line, blank-line sentence breaks
  (CoNLL-2003, WNUT-17, MIT ``.bio``);
* :func:`read_lines`: plain line files (clickbait headlines, TREC, Emotion-Stimulus).
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from multienc.datasets.sentence import Sentence

PathLike = Union[str, Path]


class CorpusFormatError(ValueError):
    """A corpus file does not have the expected format; ``path`` and ``line`` say where."""

    def __init__(self, path: PathLike, line: Optional[int], message: str):
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {message}")


def _open(path: PathLike, encoding: str):
    try:
        return open(path, encoding=encoding, newline="")
    except FileNotFoundError:
        raise CorpusFormatError(path, None, "file not found") from None


def read_lines(path: PathLike, encoding: str = "utf-8-sig") -> Iterator[Tuple[int, str]]:
    """(line number, line without its line ending) for every non-blank line."""
    with _open(path, encoding) as f:
        try:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as e:
            raise CorpusFormatError(path, None, f"not valid {encoding} text ({e})") from None


def iter_rows(path: PathLike, delimiter: str = "\t", quoting: bool = False, skip_header: bool = False,
              encoding: str = "utf-8-sig") -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) for each row of a delimited file; blank lines are skipped.

    ``quoting=False`` splits each line on ``delimiter`` and keeps quote characters
    as text (GLUE's TSVs are written that way); ``quoting=True`` reads standard
    CSV, where a quoted field may contain delimiters and line breaks (the line
    number is then where the row starts). ``skip_header`` drops the first row.
    """
    if quoting:
        rows = _csv_rows(path, delimiter, encoding)
    else:
        rows = ((number, line.split(delimiter)) for number, line in read_lines(path, encoding))
    if skip_header:
        next(rows, None)
    yield from rows


def _csv_rows(path: PathLike, delimiter: str, encoding: str) -> Iterator[Tuple[int, List[str]]]:
    with _open(path, encoding) as f:
        reader = csv.reader(f, delimiter=delimiter)
        start = 1
        try:
            for row in reader:
                number, start = start, reader.line_num + 1
                if any(field.strip() for field in row):
                    yield number, row
        except csv.Error as e:
            raise CorpusFormatError(path, reader.line_num, f"malformed CSV: {e}") from None
        except UnicodeDecodeError as e:
            raise CorpusFormatError(path, None, f"not valid {encoding} text ({e})") from None


def field(row: Sequence[str], column: int, path: PathLike, line: int) -> str:
    """``row[column]`` (negative counts from the end), or an error naming file, line and columns found."""
    if column >= len(row) or -column > len(row):
        need = column + 1 if column >= 0 else -column
        raise CorpusFormatError(path, line, f"expected at least {need} columns, found {len(row)}")
    return row[column]


def parse_label(raw: str, task_type: str, label_map: Optional[Mapping[str, int]],
                path: PathLike, line: int) -> Union[int, float]:
    """A label from its file text: a float for regression, else a class id.

    Class labels are looked up by name in ``label_map``; integer text (``0``,
    ``1``) is taken as the id itself and must be one of the map's ids.
    """
    text = raw.strip()
    if "regression" in task_type:
        try:
            value = float(text)
        except ValueError:
            raise CorpusFormatError(path, line, f"label {text!r} is not a number") from None
        if not math.isfinite(value):
            raise CorpusFormatError(path, line, f"label {text!r} is not a finite number")
        return value
    if label_map and text in label_map:
        return label_map[text]
    try:
        value = int(text)
    except ValueError:
        if not label_map:
            raise CorpusFormatError(path, line, f"label {text!r} is not a class id; pass a label_map "
                                    "to map label names to ids") from None
        raise CorpusFormatError(path, line, f"unknown label {text!r}; expected one of {list(label_map)}") from None
    if label_map and value not in label_map.values():
        raise CorpusFormatError(path, line, f"label id {value} is not in the label map {dict(label_map)}")
    return value


def read_sentences(path: PathLike, text_columns: Sequence[int], label_column: int, task_type: str,
                   label_map: Optional[Mapping[str, int]] = None, skip_header: bool = False,
                   delimiter: str = "\t", quoting: bool = False, skip_short_rows: bool = False,
                   encoding: str = "utf-8-sig") -> List[Sentence]:
    """Sentences (one text column) or sentence pairs (two) with labels from a delimited file.

    Columns are 0-based; a negative ``label_column`` counts from the row's end.
    Rows with too few columns raise CorpusFormatError, unless ``skip_short_rows``
    (GLUE's QQP and MNLI files have a few such rows): then rows shorter than the
    header (or than the columns used) are skipped with one warning that counts
    them and names their lines.
    """
    if len(text_columns) not in (1, 2):
        raise ValueError(f"text_columns must name 1 or 2 columns, got {list(text_columns)}")
    needed = max(c + 1 if c >= 0 else -c for c in list(text_columns) + [label_column])
    sentences: List[Sentence] = []
    skipped: List[int] = []
    rows = iter_rows(path, delimiter, quoting, False, encoding)
    if skip_header:
        header = next(rows, (0, []))[1]
        if skip_short_rows:
            needed = max(needed, len(header))
    for line, row in rows:
        if skip_short_rows and len(row) < needed:
            skipped.append(line)
            continue
        texts = [field(row, c, path, line).strip() for c in text_columns]
        label = parse_label(field(row, label_column, path, line), task_type, label_map, path, line)
        sentences.append(Sentence(texts[0] if len(texts) == 1 else tuple(texts), label))
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} rows with fewer than {needed} columns "
                      f"(lines {', '.join(map(str, skipped[:10]))}{', ...' if len(skipped) > 10 else ''})",
                      stacklevel=2)
    if not sentences:
        raise CorpusFormatError(path, None, "no samples found")
    return sentences


def iob1_to_iob2(tags: List[str]) -> List[str]:
    """IOB1 tags (``I-X`` may start an entity) as IOB2 (every entity starts with ``B-X``)."""
    out = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def read_column_file(path: PathLike, label_map: Mapping[str, int], word_column: int = 0, tag_column: int = 3,
                     delimiter: Optional[str] = None, to_iob2: bool = False,
                     encoding: str = "utf-8-sig") -> List[Sentence]:
    """Sentences of a one-token-per-line file (CoNLL, WNUT, MIT ``.bio``).

    Lines split on ``delimiter`` (None: any whitespace); blank lines (also ones
    holding only spaces or tabs, as in WNUT-17) end a sentence; ``-DOCSTART-``
    lines separate documents and are dropped; the last sentence needs no blank
    line after it. ``to_iob2`` rewrites IOB1 tags (the official CoNLL-2003
    files) as IOB2. Unknown tags, missing columns and empty tokens raise CorpusFormatError.
    """
    sentences: List[Sentence] = []
    words: List[str] = []
    tags: List[str] = []
    lines: List[int] = []

    def flush() -> None:
        if words:
            final = iob1_to_iob2(tags) if to_iob2 else tags
            for tag, line in zip(final, lines):
                if tag not in label_map:
                    raise CorpusFormatError(path, line, f"unknown tag {tag!r}; expected one of {list(label_map)}")
            sentences.append(Sentence(" ".join(words), [label_map[t] for t in final], tokens=list(words)))
        words.clear()
        tags.clear()
        lines.clear()

    with _open(path, encoding) as f:
        try:
            for number, raw in enumerate(f, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    flush()
                    continue
                row = line.split(delimiter)
                word = field(row, word_column, path, number)
                if not word.strip():
                    raise CorpusFormatError(path, number, f"empty token in column {word_column} (a tagged word "
                                                          "must have at least one visible character)")
                if word == "-DOCSTART-":
                    flush()
                    continue
                words.append(word)
                tags.append(field(row, tag_column, path, number).strip())
                lines.append(number)
        except UnicodeDecodeError as e:
            raise CorpusFormatError(path, None, f"not valid {encoding} text ({e})") from None
    flush()
    if not sentences:
        raise CorpusFormatError(path, None, "no sentences found")
    return sentences


def first_per_label(samples: Sequence[Sentence], per_label: int) -> Tuple[List[Sentence], List[Sentence]]:
    """(train, dev): dev takes the first ``per_label`` samples of each label in file order;
    train keeps the samples that are not equal (same text and label) to any dev sample."""
    counts: Dict[object, int] = {}
    dev: List[Sentence] = []
    for s in samples:
        if counts.get(s.label, 0) < per_label:
            counts[s.label] = counts.get(s.label, 0) + 1
            dev.append(s)
    dev_keys = {(s.text, s.label) for s in dev}
    train = [s for s in samples if (s.text, s.label) not in dev_keys]
    return train, dev
