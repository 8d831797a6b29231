"""multienc.plot: DME heat maps and training curves, checked through the figures' artists."""
import os
import sys

import matplotlib
import numpy as np
from matplotlib.container import BarContainer
import pytest

from multienc.encoders import LanguageModel, MultiEncoder
from multienc.plot import plot_dme_scores, plot_search_results, plot_training_curves, read_loss_tsv
from multienc.task_heads import TextClassifier

matplotlib.use("Agg")
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")

RESULT = {"Sentences": ["The server is down.", "Rain all day.", "A very long sentence " * 5],
          "DME scores": [[0.8, 0.2], [0.25, 0.75], [0.5, 0.5]],
          "Predictions": ["it-ops", "weather", "food"]}
LOSS_TSV = ("EPOCH\tTIMESTAMP\tLEARNING_RATE\tTRAIN_LOSS\tDEV_LOSS\tDEV_ACCURACY\tDEV_F1_SCORE\n"
            "1\t10:00:00\t5.0000e-05\t1.200000\t0.900000\t0.500000\t0.400000\n"
            "2\t10:01:00\t5.0000e-05\t0.600000\t0.700000\t0.800000\t0.750000\n"
            "3\t10:02:00\t5.0000e-05\t0.300000\t0.750000\t0.700000\t0.690000\n")


def test_sentence_heat_map():
    fig = plot_dme_scores(RESULT, lm_names=["minilm", "sre"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), RESULT["DME scores"])
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["minilm", "sre"]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[:2] == ["it-ops: The server is down.", "weather: Rain all day."]
    assert rows[2].startswith("food: A very long sentence") and rows[2].endswith("…") and len(rows[2]) == 6 + 48
    assert sorted(t.get_text() for t in ax.texts) == sorted(["0.80", "0.20", "0.25", "0.75", "0.50", "0.50"])
    assert fig.axes[1].get_ylabel() == "DME weight"  # the colour bar


def test_columns_are_the_language_models_names_by_default(tmp_path):
    for name, folder in (("electra-tiny", "google--electra-base-discriminator"), ("roberta-tiny", "roberta-base")):
        os.symlink(os.path.join(HUB, folder, "main"), tmp_path / name)
    lms = [LanguageModel(str(tmp_path / name)) for name in ("electra-tiny", "roberta-tiny")]
    clf = TextClassifier(MultiEncoder(lms, combine_method="dme"), 2)
    result = clf.predict_tags(["a good day", "a bad day"])
    assert result.lm_names == ["electra-tiny", "roberta-tiny"]
    ax = plot_dme_scores(result).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["electra-tiny", "roberta-tiny"]
    np.testing.assert_allclose(ax.images[0].get_array(), result["DME scores"])


def test_word_heat_map_of_one_sentence():
    result = {"Sentences": ["Anna flew home .", "Oslo ."],
              "DME scores": [[[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7]], [[0.2, 0.8], [0.1, 0.9]]],
              "Predictions": [[("Anna", "B-PER"), ("flew", "O"), ("home", "O"), (".", "O")],
                              [("Oslo", "B-LOC"), (".", "O")]]}
    ax = plot_dme_scores(result, sentence=1).axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.2, 0.8], [0.1, 0.9]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Oslo (B-LOC)", ". (O)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["LM 1", "LM 2"]
    assert ax.get_title() == "DME weight per word"


def test_word_past_the_maximum_length_has_no_cell():
    result = {"Sentences": ["a b c"], "DME scores": [[[0.9, 0.1], [0.4, 0.6], None]],
              "Predictions": [[("a", "O"), ("b", "B-PER"), ("c", "O")]]}
    ax = plot_dme_scores(result).axes[0]
    data = ax.images[0].get_array()
    np.testing.assert_allclose(data[:2], [[0.9, 0.1], [0.4, 0.6]])
    assert np.ma.getmaskarray(data).tolist() == [[False, False], [False, False], [True, True]]
    assert len(ax.texts) == 4


def test_heat_map_errors():
    with pytest.raises(ValueError, match="no 'DME scores'"):
        plot_dme_scores({"Sentences": ["a"], "Predictions": ["x"]})
    with pytest.raises(ValueError, match="lm_names has 3 names but the scores are for 2"):
        plot_dme_scores(RESULT, lm_names=["a", "b", "c"])


def test_training_curves_from_loss_tsv(tmp_path):
    (tmp_path / "loss.tsv").write_text(LOSS_TSV)
    columns = read_loss_tsv(str(tmp_path))
    assert list(columns) == ["EPOCH", "LEARNING_RATE", "TRAIN_LOSS", "DEV_LOSS", "DEV_ACCURACY", "DEV_F1_SCORE"]
    assert columns["DEV_ACCURACY"] == [0.5, 0.8, 0.7]
    fig = plot_training_curves(str(tmp_path))
    loss_ax, metric_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.lines + metric_ax.lines}
    np.testing.assert_allclose(lines["train loss"].get_ydata(), [1.2, 0.6, 0.3])
    np.testing.assert_allclose(lines["dev loss"].get_ydata(), [0.9, 0.7, 0.75])
    np.testing.assert_allclose(lines["f1_score"].get_ydata(), [0.4, 0.75, 0.69])
    best = lines["best accuracy"]
    assert list(best.get_xdata()) == [2] and list(best.get_ydata()) == [0.8]
    assert [t for t in loss_ax.get_xticks()] == [1, 2, 3]
    assert metric_ax.get_ylim() == pytest.approx((0.38, 1.01))  # scores in [0, 1]: the scale ends at 1


def test_close_scores_are_not_magnified(tmp_path):
    (tmp_path / "loss.tsv").write_text(LOSS_TSV.replace("0.500000\t0.400000", "0.979000\t0.979000")
                                       .replace("0.800000\t0.750000", "1.000000\t1.000000")
                                       .replace("0.700000\t0.690000", "0.979000\t0.979000"))
    metric_ax = plot_training_curves(str(tmp_path)).axes[1]
    assert metric_ax.get_ylim() == pytest.approx((0.78, 1.01))


def test_not_a_loss_tsv(tmp_path):
    (tmp_path / "loss.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a loss.tsv written by ModelTrainer"):
        read_loss_tsv(str(tmp_path))


def test_search_results_as_bars():
    nan = float("nan")
    rows = [{"combination": "a+b", "dev": {"mcc": (0.6, 0.05)}, "test": {"mcc": (0.55, 0.02)}},
            {"combination": "a", "dev": {"mcc": (0.5, nan)}, "test": {}}]
    ax = plot_search_results(rows, "mcc").axes[0]
    dev, test = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [bar.get_width() for bar in dev] == [0.6, 0.5]
    assert test[0].get_width() == 0.55
    assert np.isnan(test[1].get_width())  # no test split for "a": no bar
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a+b", "a"]
    assert ax.yaxis_inverted()  # best first, at the top
    np.testing.assert_allclose(dev.errorbar.lines[2][0].get_segments()[0][:, 0], [0.55, 0.65])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dev (mean ± std over seeds)",
                                                                   "test (mean ± std over seeds)"]


def test_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="multienc.plot needs matplotlib: pip install matplotlib"):
        plot_dme_scores(RESULT)
