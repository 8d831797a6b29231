"""multienc.evaluation.metrics against the independent reference implementations, run live:
scikit-learn (classification), scipy (correlations) and seqeval (entities)."""
import math

import numpy as np
import pytest
import scipy.stats as stats
import seqeval.metrics as seqeval_metrics
import sklearn.metrics as sk

from multienc.evaluation import metrics

pytestmark = pytest.mark.filterwarnings("ignore")

RNG_SEEDS = range(60)


def close(a: float, b: float) -> bool:
    """Equal up to float rounding; NaN equals NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def random_labels(rng, n_classes, n):
    return rng.integers(0, n_classes, size=n)


# --------------------------------------------------------------------------- classification

@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    n = int(rng.integers(1, 80))
    t = random_labels(rng, k, n)
    # mix of random, mostly-right and heavily skewed predictions
    mode = seed % 3
    if mode == 0:
        p = random_labels(rng, k, n)
    elif mode == 1:
        p = np.where(rng.random(n) < 0.8, t, random_labels(rng, k, n))
    else:
        p = np.where(rng.random(n) < 0.9, 0, random_labels(rng, k, n))
    assert isinstance(metrics.accuracy(t, p), float)
    assert close(metrics.accuracy(t, p), sk.accuracy_score(t, p))
    assert close(metrics.matthews_corr(t, p), sk.matthews_corrcoef(t, p))
    for avg in ("micro", "macro", "weighted"):
        assert close(metrics.f1_score(t, p, average=avg), sk.f1_score(t, p, average=avg)), avg
        ours = metrics.precision_recall_f1(t, p, average=avg)
        ref = sk.precision_recall_fscore_support(t, p, average=avg)[:3]
        assert all(close(a, b) for a, b in zip(ours, ref)), avg
    present = np.unique(np.concatenate([t, p]))
    if len(present) == 1 or (len(present) == 2 and 1 in present):
        assert close(metrics.f1_score(t, p, average="binary"), sk.f1_score(t, p, average="binary"))


def test_micro_f1_equals_accuracy_and_explicit_labels():
    t = [0, 1, 2, 2, 1, 0, 3]
    p = [0, 2, 2, 2, 1, 1, 0]
    assert close(metrics.f1_score(t, p), metrics.accuracy(t, p))
    labels = [0, 1, 2, 3, 4]  # 4 never occurs
    assert close(metrics.f1_score(t, p, average="macro", labels=labels),
                 sk.f1_score(t, p, average="macro", labels=labels))


@pytest.mark.parametrize("t,p", [
    ([1, 0, 1, 0], [1, 1, 1, 1]),      # constant predictions
    ([0, 0, 0, 0], [0, 0, 0, 0]),      # a single class everywhere
    ([2, 2, 2], [0, 1, 2]),            # constant gold
    ([1], [0]),                        # one sample
    (["a", "b", "a"], ["a", "a", "b"]),  # string labels
])
def test_classification_edge_cases(t, p):
    mcc = metrics.matthews_corr(t, p)
    assert close(mcc, sk.matthews_corrcoef(t, p))
    assert close(metrics.accuracy(t, p), sk.accuracy_score(t, p))
    for avg in ("micro", "macro", "weighted"):
        assert close(metrics.f1_score(t, p, average=avg), sk.f1_score(t, p, average=avg, zero_division=0))


def test_mcc_is_zero_for_constant_predictions():
    assert metrics.matthews_corr([0, 1, 1, 0, 1], [1, 1, 1, 1, 1]) == 0.0


def test_binary_f1_rejects_multiclass_and_bad_input():
    with pytest.raises(ValueError, match="at most 2"):
        metrics.f1_score([0, 1, 2], [0, 1, 1], average="binary")
    with pytest.raises(ValueError, match="pos_label=1 is not one of the labels"):
        metrics.f1_score([0, 3], [3, 3], average="binary")
    with pytest.raises(ValueError, match="3 items but y_pred has 2"):
        metrics.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.matthews_corr([], [])
    with pytest.raises(ValueError, match="unknown average"):
        metrics.f1_score([0], [0], average="samples")


@pytest.mark.parametrize("seed", range(20))
def test_classification_report_matches_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 6))
    t = random_labels(rng, k, 50)
    p = np.where(rng.random(50) < 0.6, t, random_labels(rng, k, 50))
    ours = metrics.classification_report(t, p, output_dict=True)
    ref = sk.classification_report(t, p, output_dict=True, zero_division=0)
    for label in np.unique(np.concatenate([t, p])):
        for key in ("precision", "recall", "f1-score", "support"):
            assert close(ours[str(label)][key], ref[str(label)][key])
    for row in ("macro avg", "weighted avg"):
        for key in ("precision", "recall", "f1-score", "support"):
            assert close(ours[row][key], ref[row][key]), row
    assert close(ours["micro avg"]["f1-score"], ref["accuracy"])


def test_classification_report_text_uses_target_names():
    text = metrics.classification_report([0, 1, 1], [0, 1, 0], target_names=["not_acceptable", "acceptable"],
                                         digits=2)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["not_acceptable", "0.50", "1.00", "0.67", "1"]
    assert lines[3].split() == ["acceptable", "1.00", "0.50", "0.67", "2"]
    assert lines[5].split() == ["micro", "avg", "0.67", "0.67", "0.67", "3"]


# --------------------------------------------------------------------------- correlations

@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 60))
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    if seed % 2:  # many ties, as with 0-5 similarity scores rounded to 0.2
        x = np.round(x * 2) / 2
        y = np.round(y * 2) / 2
    assert close(metrics.pearsonr(x, y), float(stats.pearsonr(x, y)[0]))
    assert close(metrics.spearmanr(x, y), float(stats.spearmanr(x, y)[0]))
    assert np.array_equal(metrics.rankdata(x), stats.rankdata(x, method="average"))


def test_correlation_edge_cases():
    assert math.isnan(metrics.pearsonr([1, 2, 3], [5, 5, 5]))
    assert math.isnan(float(stats.pearsonr([1, 2, 3], [5, 5, 5])[0]))
    assert math.isnan(metrics.spearmanr([4, 4, 4], [1, 2, 3]))
    assert math.isnan(float(stats.spearmanr([4, 4, 4], [1, 2, 3])[0]))
    assert metrics.pearsonr([1, 2], [3, 1]) == float(stats.pearsonr([1, 2], [3, 1])[0]) == -1.0
    assert close(metrics.spearmanr([1, 2, 2, 3], [1, 1, 2, 2]), float(stats.spearmanr([1, 2, 2, 3], [1, 1, 2, 2])[0]))
    assert math.isnan(metrics.spearmanr([1.0], [2.0]))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.pearsonr([1.0], [2.0])


# --------------------------------------------------------------------------- entities

TYPES = ["PER", "LOC", "creative-work"]


def random_tags(rng, scheme, n):
    """Random (not necessarily well-formed) tags of a scheme; malformed runs test tolerance."""
    prefixes = {"BIO": "BI", "IOB1": "BI", "IOBES": "BIES"}[scheme]
    out = []
    for _ in range(n):
        if rng.random() < 0.4:
            out.append("O")
        else:
            out.append(f"{prefixes[int(rng.integers(len(prefixes)))]}-{TYPES[int(rng.integers(len(TYPES)))]}")
    return out


def random_corpus(rng, scheme):
    sents = int(rng.integers(1, 8))
    t, p = [], []
    for _ in range(sents):
        n = int(rng.integers(1, 12))
        gold = random_tags(rng, scheme, n)
        pred = [g if rng.random() < 0.6 else x for g, x in zip(gold, random_tags(rng, scheme, n))]
        t.append(gold)
        p.append(pred)
    return t, p


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "IOBES"])
@pytest.mark.parametrize("seed", range(40))
def test_entity_metrics_match_seqeval(scheme, seed):
    rng = np.random.default_rng(2000 + seed)
    t, p = random_corpus(rng, scheme)
    assert metrics.get_entities(t) == seqeval_metrics.sequence_labeling.get_entities(t)
    assert close(metrics.token_accuracy(t, p), seqeval_metrics.accuracy_score(t, p))
    for avg in ("micro", "macro", "weighted"):
        assert close(metrics.entity_f1_score(t, p, average=avg), seqeval_metrics.f1_score(t, p, average=avg)), avg
        assert close(metrics.entity_precision(t, p, average=avg),
                     seqeval_metrics.precision_score(t, p, average=avg)), avg
        assert close(metrics.entity_recall(t, p, average=avg), seqeval_metrics.recall_score(t, p, average=avg)), avg
    ours = metrics.entity_classification_report(t, p, output_dict=True)
    ref = seqeval_metrics.classification_report(t, p, output_dict=True)
    assert set(ours) == set(ref)
    for row in ref:
        for key in ("precision", "recall", "f1-score", "support"):
            assert close(float(ours[row][key]), float(ref[row][key])), (row, key)


def test_entities_do_not_cross_sentence_ends():
    t = [["O", "B-PER"], ["I-PER", "O"]]
    assert metrics.get_entities(t) == [("PER", 1, 1), ("PER", 3, 3)]
    p = [["O", "B-PER"], ["O", "O"]]
    assert metrics.entity_f1_score(t, p) == seqeval_metrics.f1_score(t, p) == pytest.approx(2 / 3)


def test_iob1_and_iobes_chunks():
    assert metrics.get_entities(["I-ORG", "I-ORG", "B-ORG", "O", "I-LOC"]) == [
        ("ORG", 0, 1), ("ORG", 2, 2), ("LOC", 4, 4)]
    assert metrics.get_entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "E-LOC"]) == [
        ("PER", 0, 0), ("LOC", 1, 3), ("LOC", 4, 4)]
    assert metrics.get_entities(["PER-B", "PER-I", "O"], suffix=True) == \
        seqeval_metrics.sequence_labeling.get_entities(["PER-B", "PER-I", "O"], suffix=True)


def test_tags_without_types_match_seqeval():
    for seq in (["O", "I", "I", "O", "B", "I", "E", "O", "E", "S", "I"], ["I", "O", "E", "E", "B", "S", "I", "O"]):
        assert metrics.get_entities(seq) == seqeval_metrics.sequence_labeling.get_entities(seq)


@pytest.mark.parametrize("t,p", [
    ([["O", "O"]], [["O", "O"]]),              # no entities anywhere
    ([["O", "O"]], [["B-PER", "O"]]),          # no gold entities
    ([["B-PER", "O"]], [["O", "O"]]),          # no predicted entities
])
def test_entity_edge_cases(t, p):
    for avg in ("micro", "macro", "weighted"):
        assert close(metrics.entity_f1_score(t, p, average=avg), float(seqeval_metrics.f1_score(t, p, average=avg)))
        assert close(metrics.entity_precision(t, p, average=avg),
                     float(seqeval_metrics.precision_score(t, p, average=avg)))
        assert close(metrics.entity_recall(t, p, average=avg), float(seqeval_metrics.recall_score(t, p, average=avg)))


def test_entity_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        metrics.entity_f1_score([["O"], ["O", "O"]], [["O"], ["O"]])


# --------------------------------------------------------------------------- registry

def test_compute_registry_dispatches_by_task_type():
    assert metrics.compute("matthews_corr", [0, 1, 1, 0], [0, 1, 0, 0], "Sentence classification") == \
        pytest.approx(sk.matthews_corrcoef([0, 1, 1, 0], [0, 1, 0, 0]))
    assert metrics.compute("f1_binary", [0, 1, 1, 0], [0, 1, 0, 1], "Sentence-pair classification") == \
        pytest.approx(sk.f1_score([0, 1, 1, 0], [0, 1, 0, 1]))
    assert metrics.compute("spearmanr", [1, 2, 3], [1, 3, 2], "Sentence-pair regression") == \
        pytest.approx(stats.spearmanr([1, 2, 3], [1, 3, 2])[0])
    label_map = {"O": 0, "B-PER": 1, "I-PER": 2}
    gold_ids, pred_ids = [[1, 2, 0], [0, 1]], [[1, 2, 0], [0, 0]]
    gold = [["B-PER", "I-PER", "O"], ["O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O"], ["O", "O"]]
    assert metrics.compute("f1_score", gold_ids, pred_ids, "Sequence labeling", label_map=label_map) == \
        pytest.approx(seqeval_metrics.f1_score(gold, pred))
    assert metrics.compute("accuracy", gold, pred, "Sequence labeling") == \
        pytest.approx(seqeval_metrics.accuracy_score(gold, pred))
    assert "matthews_corr" in metrics.metric_names("Sentence classification")


def test_compute_errors_are_actionable():
    with pytest.raises(ValueError, match="unknown metric 'mcc'.*matthews_corr"):
        metrics.compute("mcc", [0], [0], "Sentence classification")
    with pytest.raises(ValueError, match="unknown task type"):
        metrics.compute("accuracy", [0], [0], "classification")
    with pytest.raises(ValueError, match="pass label_map"):
        metrics.compute("f1_score", [[0]], [[0]], "Sequence labeling")
