"""The original project's README snippets, as README.md shows them (import lines
pointing into multienc), run verbatim against a local model hub serving tiny
models under the real names and a local dataset mirror serving CoLA in its
original format."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from _data_server import MirrorServer
from _hub_server import HubServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
COLA_URL = "https://dl.fbaipublicfiles.com/glue/data/CoLA.zip"

ACCEPTABLE = ["The sailors rode the breeze clear of the rocks.", "The more we study verbs, the crazier they get.",
              "Bill whistled past the house.", "They drank the pub dry.", "John left.", "Mary ate the apple.",
              "The cat sat on the mat.", "We saw the film yesterday.", "She gave him a book.",
              "He might go to the store.", "The children are playing outside.", "I think that he left.",
              "Who did you see?", "The dog barked loudly.", "Sue sang a song.", "It rained all day."]


def scrambled(s: str) -> str:
    words = s.rstrip(".?").split()
    return " ".join(reversed(words)) + "."


def cola_tsv(rows) -> str:
    """CoLA's layout: source code, label, original judgement (* when unacceptable), sentence; no header."""
    return "".join(f"gj04\t{lab}\t{'' if lab else '*'}\t{text}\n" for text, lab in rows)


def snippets():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    found = re.findall(r"<!-- seed-snippet -->\n```python\n(.*?)```", text, flags=re.S)
    assert len(found) == 7, "README.md shows the seven snippets of the original README"
    return found


@pytest.fixture
def local_world(tmp_path, monkeypatch):
    rows = [(s, 1) for s in ACCEPTABLE] + [(scrambled(s), 0) for s in ACCEPTABLE]
    train, dev = rows[:12] + rows[16:28], rows[12:16] + rows[28:32]
    with HubServer(HUB) as hub, MirrorServer(tmp_path / "mirror") as mirror:
        mirror.put_zip(COLA_URL, {"CoLA/train.tsv": cola_tsv(train), "CoLA/dev.tsv": cola_tsv(dev),
                                  "CoLA/test.tsv": "index\tsentence\n0\tBill whistled past the house.\n"})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MULTIENC_DATASETS_MIRROR", mirror.url)
        monkeypatch.chdir(tmp_path)
        yield hub, mirror


RELOAD = (
    "import json, sys\n"
    "from multienc.task_heads import TextClassifier\n"
    "m = TextClassifier.from_checkpoint(sys.argv[1])\n"
    "print(json.dumps(m.predict_tags(json.loads(sys.argv[2]), m.label_map)))\n")


def test_seed_readme_snippets_run_verbatim(tmp_path, local_world, capsys, monkeypatch):
    hub, mirror = local_world
    ns: dict = {}
    for code in snippets():
        exec(compile(code, "README.md snippet", "exec"), ns)  # noqa: S102 (our own README)
    hub.stop()
    out = capsys.readouterr().out
    assert "CoLA Corpus of Linguistic Acceptability" in out
    # the DME model's checkpoint sits where the original README looks for it
    path = "models/CoLA-multi-transformer-electra-base-discriminator-roberta-base-classifier/best-model.pt"
    assert os.path.isfile(path)
    assert os.path.isfile("models/CoLA-single-transformer-electra-base-discriminator-classifier/best-model.pt")
    pred = ns["model"].predict_tags(ns["sentences"], ns["corpus"].label_map)
    assert list(pred) == ["Sentences", "DME scores", "Predictions"]
    assert pred["Sentences"] == ns["sentences"]
    assert set(pred["Predictions"]) <= {"acceptable", "not_acceptable"}
    np.testing.assert_allclose(np.sum(pred["DME scores"], axis=1), 1.0, rtol=1e-6)
    plain = ns["predictions"]  # the last snippet's call without a label map
    assert all(isinstance(p, int) for p in plain["Predictions"])
    assert [lm.name for lm in ns["multi_encoder"].language_models] == [
        "electra-base-discriminator", "roberta-base", "spanbert-base-cased"]
    assert ns["multi_encoder"].combine_method == "concat"
    # the corpus was downloaded once, and the models were fetched from the hub once each
    assert mirror.count(COLA_URL) == 1
    got = [r.path for r in hub.requests if r.method == "GET"]
    assert len(got) == len(set(got))
    # with the hub stopped, offline, in a new process: the checkpoint alone rebuilds the model
    # (the last snippets trained on and rewrote it, so compare with its current content)
    from multienc.task_heads import TextClassifier
    pred = TextClassifier.from_checkpoint(path).predict_tags(ns["sentences"], ns["corpus"].label_map)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = subprocess.run([sys.executable, "-c", RELOAD, path, json.dumps(ns["sentences"])], capture_output=True,
                         text=True, env=dict(os.environ, HF_HOME=str(tmp_path / "no-hf")), check=True)
    assert json.loads(out.stdout) == pred
