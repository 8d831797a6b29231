"""The notebooks in notebooks/ run top to bottom (nbclient) and show their figures.

Each notebook's cell tagged ``parameters`` picks the built-in default (two real models, a few
epochs); here it is replaced by the tiny fixture models, one epoch and a temporary output folder,
so the whole file takes seconds. The notebooks themselves are stored without outputs.
"""
import base64
import os

import nbclient
import nbformat
import pytest

import multienc.task_heads

if os.environ.get("MULTIENC_SANITIZED"):
    pytest.skip("the notebooks' kernels are not run under the sanitizers (test_cli covers the same C paths)",
                allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.task_heads.__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
TINY = [os.path.join(HUB, "roberta-base", "main"), os.path.join(HUB, "google--electra-base-discriminator", "main")]
NAMES = ["01_quickstart.ipynb", "02_dme_scores.ipynb", "03_ner.ipynb"]


def load(name: str):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def execute(name: str, out_dir: str, monkeypatch):
    """Run ``name`` with tiny parameters; returns the executed notebook."""
    book = load(name)
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    params[0].source = f"MODELS = {TINY!r}\nEPOCHS = 1\nOUT = {out_dir!r}\n"
    monkeypatch.setenv("PYTHONPATH", PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MULTIENC_CACHE", os.path.join(out_dir, "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": out_dir}})
    client.execute()
    return book


def images(book, cell_source_part: str):
    """The PNG outputs of the code cell whose source contains ``cell_source_part``."""
    cell = next(c for c in book.cells if c.cell_type == "code" and cell_source_part in c.source)
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


def text_output(book, cell_source_part: str) -> str:
    cell = next(c for c in book.cells if c.cell_type == "code" and cell_source_part in c.source)
    parts = []
    for o in cell.outputs:
        parts.append(o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    for cell in load(name).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip the outputs before committing"


def test_quickstart(tmp_path, monkeypatch):
    book = execute(NAMES[0], str(tmp_path), monkeypatch)
    assert "Dataset name: multienc demo topics" in text_output(book, "print(corpus)")
    for run in ("single", "multi"):
        assert (tmp_path / run / "best-model.pt").is_file() and (tmp_path / run / "loss.tsv").is_file()
    shown = text_output(book, "from_checkpoint")
    assert "'DME scores'" in shown and "'Predictions'" in shown and "The nightly backup job failed again." in shown


def test_dme_scores_figures(tmp_path, monkeypatch):
    book = execute(NAMES[1], str(tmp_path), monkeypatch)
    heat_map = images(book, "plot_dme_scores(")
    curves = images(book, "plot_training_curves(")
    assert len(heat_map) == 1 and len(curves) == 1
    for png in heat_map + curves:
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    means = text_output(book, "weights[gold == label]").splitlines()
    assert [line.split()[0] for line in means] == ["it-ops", "food", "sport", "weather"]


def test_ner_figure(tmp_path, monkeypatch):
    book = execute(NAMES[2], str(tmp_path), monkeypatch)
    assert "Dataset name: multienc demo NER" in text_output(book, "print(corpus)")
    assert "Anna" in text_output(book, "words_and_tags")
    heat_map = images(book, "plot_dme_scores(")
    assert len(heat_map) == 1 and heat_map[0].startswith(b"\x89PNG")
