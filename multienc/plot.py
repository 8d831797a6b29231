"""Pictures of a trained model (needs matplotlib: ``pip install matplotlib`` or ``multienc[plot]``).

    from multienc.plot import plot_dme_scores, plot_training_curves
    result = classifier.predict_tags(sentences, corpus.label_map)
    plot_dme_scores(result, lm_names=["all-MiniLM-L6-v2", "sre-embedding-model"])   # heat map
    plot_training_curves("models/<run>")                                            # from loss.tsv
    plot_search_results(combination_search(...), "mcc")   # a search's table as bars

All return the matplotlib Figure (``fig.savefig("x.png")``); in a notebook it is displayed.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["plot_dme_scores", "plot_training_curves", "plot_search_results", "read_loss_tsv"]

_MAX_LABEL = 48


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("multienc.plot needs matplotlib: pip install matplotlib") from None
    return plt


def _short(text: Any) -> str:
    text = text if isinstance(text, str) else " / ".join(text)
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL - 1] + "…"


def plot_dme_scores(result: Mapping[str, list], lm_names: Optional[Sequence[str]] = None, sentence: int = 0,
                    ax=None, title: Optional[str] = None):
    """Heat map of DME scores from a ``predict_tags`` result: one row per sentence (or, for a tagger's
    per-word scores, one row per word of sentence number ``sentence``), one column per language
    model, each cell the weight (0..1) the multi-encoder gave that model; row labels carry the
    prediction. ``lm_names`` label the columns (default: the language models' names, which a
    ``predict_tags`` result carries as ``result.lm_names``; LM 1, LM 2, ... for a plain dict).
    Returns the Figure.

    ValueError when the result has no ``'DME scores'`` (the model does not combine with DME).
    """
    if "DME scores" not in result:
        raise ValueError("the result has no 'DME scores': predict with a MultiEncoder built with "
                         "combine_method='dme' and two or more language models")
    plt = _pyplot()
    scores = result["DME scores"]
    predictions = result.get("Predictions", [])
    per_word = any(isinstance(w, (list, tuple)) for sent in scores for w in sent)
    if per_word:
        n = max(len(w) for w in scores[sentence] if w is not None)
        # a tagger gives None for a word past the maximum length: no cell
        weights = [list(w) if w is not None else [math.nan] * n for w in scores[sentence]]
        words = _words(result, sentence, len(weights))
        tags = predictions[sentence] if len(predictions) > sentence else [""] * len(weights)
        labels = [f"{w} ({_tag_text(t)})" for w, t in zip(words, tags)]
    else:
        weights = [list(row) for row in scores]
        labels = [f"{p}: {_short(s)}" if predictions else _short(s)
                  for p, s in zip(predictions or [None] * len(weights), result["Sentences"])]
    n_lms = len(weights[0]) if weights else 0
    if lm_names is None:
        lm_names = getattr(result, "lm_names", None) or [f"LM {i + 1}" for i in range(n_lms)]
    names = list(lm_names)
    if len(names) != n_lms:
        raise ValueError(f"lm_names has {len(names)} names but the scores are for {n_lms} language models")
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 + 1.6 * n_lms + 0.09 * max(map(len, labels), default=10),
                                        1.0 + 0.36 * len(labels)), layout="constrained")
    else:
        fig = ax.figure
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_lms), names)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(weights):
        for j, w in enumerate(row):
            if math.isnan(w):
                continue
            ax.text(j, i, f"{w:.2f}", ha="center", va="center", color="black" if w > 0.5 else "white", fontsize=9)
    fig.colorbar(image, ax=ax, label="DME weight", shrink=0.8)
    ax.set_title(title or ("DME weight per word" if per_word else "DME weight per sentence"))
    return fig


def _words(result: Mapping[str, list], sentence: int, count: int) -> List[str]:
    text = result["Sentences"][sentence]
    words = text.split() if isinstance(text, str) else list(text)
    return words if len(words) == count else [str(i + 1) for i in range(count)]


def _tag_text(tag: Any) -> str:
    # a tagger may give (word, tag) pairs or bare tags
    return str(tag[1]) if isinstance(tag, (list, tuple)) and len(tag) == 2 else str(tag)


def read_loss_tsv(base_path: str) -> Dict[str, List[float]]:
    """The columns of ``base_path/loss.tsv`` as written by the trainer (``EPOCH``, ``TRAIN_LOSS``,
    ``DEV_LOSS``, ``DEV_<METRIC>``...), numbers as floats; ``TIMESTAMP`` is left out."""
    path = os.path.join(base_path, "loss.tsv")
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if not rows or "EPOCH" not in rows[0]:
        raise ValueError(f"{path}: not a loss.tsv written by ModelTrainer")
    header, body = rows[0], rows[1:]
    return {name: [float(r[i]) for r in body] for i, name in enumerate(header) if name != "TIMESTAMP"}


def plot_training_curves(base_path: str):
    """Two panels from ``base_path/loss.tsv``: train and dev loss per epoch, and each dev metric per
    epoch (the best epoch of the first, the main metric, marked). Returns the Figure."""
    plt = _pyplot()
    columns = read_loss_tsv(base_path)
    epochs = [int(e) for e in columns["EPOCH"]]
    metrics = [k for k in columns if k.startswith("DEV_") and k != "DEV_LOSS"]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    loss_ax.plot(epochs, columns["TRAIN_LOSS"], "o-", label="train loss")
    loss_ax.plot(epochs, columns["DEV_LOSS"], "s-", label="dev loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    for name in metrics:
        metric_ax.plot(epochs, columns[name], "o-", label=name[4:].lower())
    if metrics:
        main = columns[metrics[0]]
        best = max(range(len(main)), key=lambda i: main[i])
        metric_ax.plot([epochs[best]], [main[best]], "*", markersize=16, color="gold", markeredgecolor="black",
                       label=f"best {metrics[0][4:].lower()}")
        metric_ax.legend()
        values = [v for name in metrics for v in columns[name]]
        lo, hi = min(values), max(values)
        if 0.0 <= lo and hi <= 1.0:  # a score in [0, 1]: show at least 0.2 of the scale, so that one
            metric_ax.set_ylim(max(0.0, min(lo, hi - 0.2) - 0.02), 1.01)  # dev sentence is not a cliff
    metric_ax.set(xlabel="epoch", ylabel="score", title="Dev metrics")
    for ax in (loss_ax, metric_ax):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.normpath(base_path)), fontsize=9)
    return fig


def plot_search_results(rows: Sequence[Mapping[str, Any]], metric: str):
    """Horizontal bars of a combination search's table (the rows
    :func:`multienc.experiments.combination_search` returns): per combination, the dev and (where
    the runs have one) the test ``metric``'s mean over the seeds, with the standard deviation as an
    error bar, in the table's order (best dev score at the top). Returns the Figure."""
    plt = _pyplot()
    names = [r["combination"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(names)), layout="constrained")
    splits = [s for s in ("dev", "test") if any(metric in r[s] for r in rows)]
    height = 0.8 / max(1, len(splits))
    for k, split in enumerate(splits):
        means = [r[split][metric][0] if metric in r[split] else math.nan for r in rows]
        stds = [r[split][metric][1] if metric in r[split] else math.nan for r in rows]
        ys = [i + (k - (len(splits) - 1) / 2) * height for i in range(len(rows))]
        ax.barh(ys, means, height=height, xerr=[0.0 if math.isnan(e) else e for e in stds], capsize=3,
                label=f"{split} (mean ± std over seeds)")
    ax.set_yticks(range(len(names)), [_short(n) for n in names])
    ax.invert_yaxis()
    ax.set(xlabel=metric, title=f"Combination search: {metric}")
    ax.grid(axis="x", alpha=0.3)
    if splits:
        ax.legend(loc="lower right", fontsize=8)
    return fig
