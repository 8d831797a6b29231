"""Evaluation metrics, implemented in numpy with the exact semantics of the
reference libraries the seed used (scikit-learn, scipy, seqeval).

Every metric takes plain sequences or arrays and returns a Python float.

Sentence-level metrics (class ids or floats):
    accuracy, f1_score (micro / macro / binary / weighted), precision_recall_f1,
    matthews_corr, pearsonr, spearmanr, classification_report.

Entity-level metrics for sequence labeling (lists of tag-string lists, any of
BIO/IOB2, IOB1 or IOBES; seqeval's default, non-strict mode):
    get_entities, entity_precision_recall_f1, entity_f1_score,
    entity_precision, entity_recall, token_accuracy, entity_classification_report.

The trainer calls metrics by the seed's names through :func:`compute`::

    compute("matthews_corr", y_true, y_pred, "Sentence classification")
    compute("f1_score", gold_tag_ids, pred_tag_ids, "Sequence labeling",
            label_map=corpus.label_map)

Zero denominators give 0.0 (scikit-learn's and seqeval's ``zero_division``
default) without warnings; correlations of a constant input are NaN, as scipy.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "accuracy", "f1_score", "precision_recall_f1", "matthews_corr", "matthews_corrcoef",
    "pearsonr", "spearmanr", "rankdata", "classification_report",
    "get_entities", "entity_precision_recall_f1", "entity_f1_score", "entity_precision",
    "entity_recall", "token_accuracy", "entity_classification_report",
    "METRICS", "TASK_TYPES", "compute", "metric_names",
]

TASK_TYPES = (
    "Sentence classification",
    "Sentence-pair classification",
    "Sentence regression",
    "Sentence-pair regression",
    "Sequence labeling",
)

Entity = Tuple[str, int, int]


def _pair(y_true: Sequence, y_pred: Sequence, what: str) -> Tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-D arrays of the same, non-zero length."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"{what}: expected 1-D sequences, got shapes {t.shape} and {p.shape}")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"{what}: y_true has {t.shape[0]} items but y_pred has {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError(f"{what}: empty input")
    return t, p


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0.0 where den == 0 (zero_division=0 semantics)."""
    den = np.asarray(den, dtype=np.float64).copy()
    mask = den == 0.0
    den[mask] = 1.0
    out = np.asarray(num, dtype=np.float64) / den
    out[mask] = 0.0
    return out


# --------------------------------------------------------------------------- classification

def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of positions where ``y_pred`` equals ``y_true`` (sklearn ``accuracy_score``)."""
    t, p = _pair(y_true, y_pred, "accuracy")
    return float(np.mean(t == p))


def _label_counts(t: np.ndarray, p: np.ndarray, labels: Optional[Sequence]) -> Tuple[np.ndarray, ...]:
    """Per-label (labels, tp, predicted, true) counts over ``labels`` (default: sorted union)."""
    lab = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    tp = np.array([np.sum((t == c) & (p == c)) for c in lab], dtype=np.float64)
    pred = np.array([np.sum(p == c) for c in lab], dtype=np.float64)
    true = np.array([np.sum(t == c) for c in lab], dtype=np.float64)
    return lab, tp, pred, true


def precision_recall_f1(y_true: Sequence, y_pred: Sequence, average: str = "micro",
                        labels: Optional[Sequence] = None, pos_label=1) -> Tuple[float, float, float]:
    """Precision, recall and F1 of single-label predictions, as scikit-learn computes them.

    ``average``: "micro" (counts summed over labels; equals accuracy when all labels
    are included), "macro" (unweighted mean over labels), "weighted" (mean weighted
    by true counts) or "binary" (the ``pos_label`` class only; the data must have at
    most two distinct labels). ``labels`` defaults to the sorted union of both inputs.
    F is computed from counts, ``2·tp / (true + pred)``; zero denominators give 0.0.
    """
    t, p = _pair(y_true, y_pred, "f1_score")
    if average == "binary":
        present = np.unique(np.concatenate([t, p]))
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most 2 distinct labels, found {present.tolist()};"
                             " use average='micro', 'macro' or 'weighted'")
        if len(present) == 2 and pos_label not in present.tolist():
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels {present.tolist()}")
        labels = [pos_label]
    elif average not in ("micro", "macro", "weighted"):
        raise ValueError(f"unknown average {average!r}; use 'micro', 'macro', 'weighted' or 'binary'")
    _, tp, pred, true = _label_counts(t, p, labels)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    precision = _divide(tp, pred)
    recall = _divide(tp, true)
    f1 = _divide(2.0 * tp, true + pred)
    if average == "weighted":
        if true.sum() == 0:
            return 0.0, 0.0, 0.0
        return tuple(float(np.average(v, weights=true)) for v in (precision, recall, f1))
    return float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1))


def f1_score(y_true: Sequence, y_pred: Sequence, average: str = "micro",
             labels: Optional[Sequence] = None, pos_label=1) -> float:
    """F1 score (sklearn ``f1_score``); see :func:`precision_recall_f1` for ``average``.

    The default, "micro", is what the seed's classifier reported (it equals accuracy
    for single-label classification).
    """
    return precision_recall_f1(y_true, y_pred, average=average, labels=labels, pos_label=pos_label)[2]


def matthews_corr(y_true: Sequence, y_pred: Sequence) -> float:
    """Matthews correlation coefficient, binary or multiclass (sklearn ``matthews_corrcoef``).

    Returns 0.0 (no division error) when either side is constant.
    """
    t, p = _pair(y_true, y_pred, "matthews_corr")
    labels, t_idx = np.unique(np.concatenate([t, p]), return_inverse=True)
    k = len(labels)
    C = np.zeros((k, k), dtype=np.int64)
    np.add.at(C, (t_idx[:len(t)], t_idx[len(t):]), 1)
    t_sum = C.sum(axis=1, dtype=np.float64)
    p_sum = C.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(C, dtype=np.float64)
    n = p_sum.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n ** 2 - np.dot(p_sum, p_sum)
    cov_ytyt = n ** 2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


matthews_corrcoef = matthews_corr


# --------------------------------------------------------------------------- correlation

def _float_pair(x: Sequence, y: Sequence, what: str) -> Tuple[np.ndarray, np.ndarray]:
    a, b = _pair(x, y, what)
    return a.astype(np.float64), b.astype(np.float64)


def pearsonr(x: Sequence, y: Sequence) -> float:
    """Pearson correlation coefficient (scipy ``pearsonr(...).statistic``).

    NaN when either input is constant; fewer than 2 observations raise ValueError.
    """
    a, b = _float_pair(x, y, "pearsonr")
    if len(a) < 2:
        raise ValueError("pearsonr: needs at least 2 observations")
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    am = a - a.mean()
    bm = b - b.mean()
    amax = np.max(np.abs(am))
    bmax = np.max(np.abs(bm))
    norm_a = amax * np.linalg.norm(am / amax)
    norm_b = bmax * np.linalg.norm(bm / bmax)
    r = float(np.clip(np.dot(am / norm_a, bm / norm_b), -1.0, 1.0))
    return float(round(r)) if len(a) == 2 else r


def rankdata(a: Sequence) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy ``rankdata(method="average")``)."""
    arr = np.asarray(a)
    order = np.argsort(arr, kind="mergesort")
    sorted_arr = arr[order]
    new_block = np.concatenate([[True], sorted_arr[1:] != sorted_arr[:-1]])
    starts = np.flatnonzero(new_block)
    counts = np.diff(np.append(starts, len(arr)))
    block_rank = starts + 1 + (counts - 1) / 2.0
    ranks = np.empty(len(arr), dtype=np.float64)
    ranks[order] = np.repeat(block_rank, counts)
    return ranks


def spearmanr(x: Sequence, y: Sequence) -> float:
    """Spearman rank correlation with tie-averaged ranks (scipy ``spearmanr(...).statistic``).

    NaN when either input is constant or has fewer than 2 observations.
    """
    a, b = _float_pair(x, y, "spearmanr")
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    c = np.corrcoef(rankdata(a), rankdata(b))
    return float(c[0, 1])


# --------------------------------------------------------------------------- reports

def _format_report(rows: List[Tuple[str, float, float, float, int]], digits: int) -> str:
    """Fixed-width text table: name, precision, recall, f1-score, support."""
    width = max([len("weighted avg")] + [len(r[0]) for r in rows])
    head = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [head, ""]
    for i, (name, p, r, f, s) in enumerate(rows):
        if name == "micro avg":
            lines.append("")
        lines.append(f"{name:>{width}} {p:>9.{digits}f} {r:>9.{digits}f} {f:>9.{digits}f} {s:>9}")
    return "\n".join(lines) + "\n"


def _report(names: List[str], tp: np.ndarray, pred: np.ndarray, true: np.ndarray,
            digits: int, output_dict: bool) -> Union[str, Dict[str, Dict[str, float]]]:
    """Per-label rows plus micro, macro and support-weighted averages."""
    precision, recall = _divide(tp, pred), _divide(tp, true)
    f1 = _divide(2.0 * tp, true + pred)
    mp, mr = _divide(tp.sum(keepdims=True), pred.sum(keepdims=True)), _divide(tp.sum(keepdims=True),
                                                                              true.sum(keepdims=True))
    mf = _divide(2.0 * tp.sum(keepdims=True), (true + pred).sum(keepdims=True))
    total = int(true.sum())
    rows = [(n, float(p), float(r), float(f), int(s)) for n, p, r, f, s in zip(names, precision, recall, f1, true)]
    rows.append(("micro avg", float(mp[0]), float(mr[0]), float(mf[0]), total))
    if len(names):
        rows.append(("macro avg", float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1)), total))
    if total:
        rows.append(("weighted avg", *(float(np.average(v, weights=true)) for v in (precision, recall, f1)), total))
    if output_dict:
        return {n: {"precision": p, "recall": r, "f1-score": f, "support": s} for n, p, r, f, s in rows}
    return _format_report(rows, digits)


def classification_report(y_true: Sequence, y_pred: Sequence, labels: Optional[Sequence] = None,
                          target_names: Optional[Sequence[str]] = None, digits: int = 4,
                          output_dict: bool = False) -> Union[str, Dict[str, Dict[str, float]]]:
    """Per-class precision, recall, F1 and support, plus micro/macro/weighted averages.

    Per-class numbers and the macro and weighted rows equal scikit-learn's report;
    the "micro avg" row is what scikit-learn prints as "accuracy" when every
    label is included. ``target_names`` (e.g. names from a corpus label_map, in
    id order) rename the rows. Returns text, or a dict when ``output_dict``.
    """
    t, p = _pair(y_true, y_pred, "classification_report")
    lab, tp, pred, true = _label_counts(t, p, labels)
    if target_names is not None and len(target_names) != len(lab):
        raise ValueError(f"classification_report: {len(target_names)} target_names for {len(lab)} labels")
    names = [str(n) for n in (target_names if target_names is not None else lab.tolist())]
    return _report(names, tp, pred, true, digits, output_dict)


# --------------------------------------------------------------------------- entities (seqeval)

TagSequences = Sequence[Sequence[str]]


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(seq: Union[Sequence[str], TagSequences], suffix: bool = False) -> List[Entity]:
    """Entity chunks ``(type, start, end)`` (inclusive) of a tag sequence, as seqeval.

    A list of sentences is flattened with an ``O`` after each sentence, so no
    entity crosses a sentence end; offsets then refer to that flattened list. The
    same rules read IOB2, IOB1 (an ``I-X`` after ``O`` or another type starts an
    entity) and IOBES. ``suffix=True`` reads tags written as ``PER-B``.
    """
    if any(isinstance(s, (list, tuple)) for s in seq):
        seq = [tag for sent in seq for tag in list(sent) + ["O"]]
    chunks: List[Entity] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(list(seq) + ["O"]):
        if suffix:
            tag, type_ = chunk[-1], chunk[:-1].rsplit("-", maxsplit=1)[0] or "_"
        else:
            tag, type_ = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _check_tag_lists(y_true: TagSequences, y_pred: TagSequences, what: str) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{what}: {len(y_true)} gold sentences but {len(y_pred)} predicted")
    for i, (a, b) in enumerate(zip(y_true, y_pred)):
        if len(a) != len(b):
            raise ValueError(f"{what}: sentence {i} has {len(a)} gold tags but {len(b)} predicted")


def _entity_counts(y_true: TagSequences, y_pred: TagSequences,
                   suffix: bool) -> Tuple[List[str], np.ndarray, np.ndarray, np.ndarray]:
    """Sorted entity types with per-type (tp, predicted, true) counts."""
    _check_tag_lists(y_true, y_pred, "entity metrics")
    true_sets: Dict[str, set] = defaultdict(set)
    pred_sets: Dict[str, set] = defaultdict(set)
    for type_, s, e in get_entities([list(x) for x in y_true], suffix):
        true_sets[type_].add((s, e))
    for type_, s, e in get_entities([list(x) for x in y_pred], suffix):
        pred_sets[type_].add((s, e))
    types = sorted(set(true_sets) | set(pred_sets))
    tp = np.array([len(true_sets[k] & pred_sets[k]) for k in types], dtype=np.float64)
    pred = np.array([len(pred_sets[k]) for k in types], dtype=np.float64)
    true = np.array([len(true_sets[k]) for k in types], dtype=np.float64)
    return types, tp, pred, true


def entity_precision_recall_f1(y_true: TagSequences, y_pred: TagSequences, average: str = "micro",
                               suffix: bool = False) -> Tuple[float, float, float]:
    """Entity-level precision, recall and F1 (seqeval, default mode).

    An entity counts as correct only when type, start and end all match.
    ``average``: "micro" (counts summed over types), "macro" (mean over the types
    found in gold or prediction; NaN, as seqeval, when there are none) or
    "weighted" (by gold counts; 0.0 when there are no gold entities).
    """
    if average not in ("micro", "macro", "weighted"):
        raise ValueError(f"unknown average {average!r}; use 'micro', 'macro' or 'weighted'")
    _, tp, pred, true = _entity_counts(y_true, y_pred, suffix)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    precision = _divide(tp, pred)
    recall = _divide(tp, true)
    denom = precision + recall
    denom[denom == 0.0] = 1.0
    f1 = 2.0 * precision * recall / denom
    if average == "weighted":
        if true.sum() == 0:
            return 0.0, 0.0, 0.0
        return tuple(float(np.average(v, weights=true)) for v in (precision, recall, f1))
    if len(tp) == 0:
        return float("nan"), float("nan"), float("nan")
    return float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1))


def entity_f1_score(y_true: TagSequences, y_pred: TagSequences, average: str = "micro",
                    suffix: bool = False) -> float:
    """Entity-level F1 (seqeval ``f1_score``); see :func:`entity_precision_recall_f1`."""
    return entity_precision_recall_f1(y_true, y_pred, average, suffix)[2]


def entity_precision(y_true: TagSequences, y_pred: TagSequences, average: str = "micro",
                     suffix: bool = False) -> float:
    """Entity-level precision (seqeval ``precision_score``)."""
    return entity_precision_recall_f1(y_true, y_pred, average, suffix)[0]


def entity_recall(y_true: TagSequences, y_pred: TagSequences, average: str = "micro",
                  suffix: bool = False) -> float:
    """Entity-level recall (seqeval ``recall_score``)."""
    return entity_precision_recall_f1(y_true, y_pred, average, suffix)[1]


def token_accuracy(y_true: TagSequences, y_pred: TagSequences) -> float:
    """Fraction of tokens whose tag is right (seqeval ``accuracy_score``)."""
    _check_tag_lists(y_true, y_pred, "token_accuracy")
    flat_t = [t for s in y_true for t in s]
    flat_p = [t for s in y_pred for t in s]
    if not flat_t:
        raise ValueError("token_accuracy: empty input")
    return float(np.mean([a == b for a, b in zip(flat_t, flat_p)]))


def entity_classification_report(y_true: TagSequences, y_pred: TagSequences, digits: int = 4,
                                 output_dict: bool = False,
                                 suffix: bool = False) -> Union[str, Dict[str, Dict[str, float]]]:
    """Per-entity-type precision, recall, F1 and support with micro/macro/weighted rows (seqeval)."""
    types, tp, pred, true = _entity_counts(y_true, y_pred, suffix)
    return _report(types, tp, pred, true, digits, output_dict)


# --------------------------------------------------------------------------- registry

def _ids_to_tags(seqs: Sequence[Sequence], label_map: Optional[Mapping[str, int]]) -> List[List[str]]:
    """Tag-id lists to tag-string lists via ``label_map`` (name -> id); strings pass through."""
    out = []
    inverse = {v: k for k, v in label_map.items()} if label_map else None
    for s in seqs:
        tags = list(s)
        if tags and not isinstance(tags[0], str):
            if inverse is None:
                raise ValueError("sequence labeling metrics got tag ids; pass label_map to turn them into tags")
            try:
                tags = [inverse[int(t)] for t in tags]
            except KeyError as e:
                raise ValueError(f"tag id {e.args[0]} is not in the label_map") from None
        out.append(tags)
    return out


def _seq(fn: Callable[[TagSequences, TagSequences], float]) -> Callable[..., float]:
    def run(y_true, y_pred, label_map=None):
        return fn(_ids_to_tags(y_true, label_map), _ids_to_tags(y_pred, label_map))
    run.__doc__ = fn.__doc__
    return run


def _flat(fn: Callable[[Sequence, Sequence], float]) -> Callable[..., float]:
    def run(y_true, y_pred, label_map=None):
        return fn(y_true, y_pred)
    run.__doc__ = fn.__doc__
    return run


_CLASSIFICATION: Dict[str, Callable[..., float]] = {
    "accuracy": _flat(accuracy),
    "f1_score": _flat(f1_score),
    "f1_macro": _flat(lambda t, p: f1_score(t, p, average="macro")),
    "f1_binary": _flat(lambda t, p: f1_score(t, p, average="binary")),
    "matthews_corr": _flat(matthews_corr),
}
_REGRESSION: Dict[str, Callable[..., float]] = {
    "pearsonr": _flat(pearsonr),
    "spearmanr": _flat(spearmanr),
}
_SEQUENCE: Dict[str, Callable[..., float]] = {
    "accuracy": _seq(token_accuracy),
    "f1_score": _seq(entity_f1_score),
    "f1_macro": _seq(lambda t, p: entity_f1_score(t, p, average="macro")),
    "precision": _seq(entity_precision),
    "recall": _seq(entity_recall),
}

#: metric name -> function, per task type. Names are the seed's (``accuracy``,
#: ``f1_score``, ``matthews_corr``, ``pearsonr``, ``spearmanr``) plus ``f1_macro``,
#: ``f1_binary`` (positive class 1, GLUE's MRPC/QQP F1), and entity ``precision``/``recall``.
METRICS: Dict[str, Dict[str, Callable[..., float]]] = {
    "Sentence classification": _CLASSIFICATION,
    "Sentence-pair classification": _CLASSIFICATION,
    "Sentence regression": _REGRESSION,
    "Sentence-pair regression": _REGRESSION,
    "Sequence labeling": _SEQUENCE,
}


def _table(task_type: str) -> Dict[str, Callable[..., float]]:
    if task_type not in METRICS:
        raise ValueError(f"unknown task type {task_type!r}; expected one of {list(TASK_TYPES)}")
    return METRICS[task_type]


def metric_names(task_type: str) -> List[str]:
    """Names :func:`compute` accepts for ``task_type``."""
    return list(_table(task_type))


def compute(name: str, y_true: Sequence, y_pred: Sequence, task_type: str,
            label_map: Optional[Mapping[str, int]] = None) -> float:
    """Metric ``name`` for ``task_type`` on gold ``y_true`` and predicted ``y_pred``.

    Classification: class ids. Regression: floats. Sequence labeling: one list of
    tags per sentence, as tag strings or as tag ids with ``label_map`` (name -> id)
    to decode them; "accuracy" is then token accuracy and "f1_score" entity-level
    micro F1. Unknown names raise ValueError listing the valid ones.
    """
    table = _table(task_type)
    if name not in table:
        raise ValueError(f"unknown metric {name!r} for {task_type!r}; choose from {sorted(table)}")
    return table[name](y_true, y_pred, label_map=label_map)
