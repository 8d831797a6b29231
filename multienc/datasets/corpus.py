"""Corpus (train/dev/test splits plus task metadata) and CSVCorpus for custom files."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from multienc.evaluation import metrics
from multienc.datasets.readers import read_sentences
from multienc.datasets.sentence import Sentence, SentenceDataset

TASK_TYPES = metrics.TASK_TYPES
Split = Union[SentenceDataset, Sequence[Sentence]]


def default_metrics(task_type: str) -> List[str]:
    """The seed's defaults: classification [accuracy, f1_score], regression [spearmanr, pearsonr];
    sequence labeling (no default in the seed) [f1_score]."""
    if "classification" in task_type:
        return ["accuracy", "f1_score"]
    if "regression" in task_type:
        return ["spearmanr", "pearsonr"]
    return ["f1_score"]


class Corpus:
    """Train, dev and optional test splits of one task, with what a trainer needs to know.

    Attributes: ``name``, ``task_type`` (one of :data:`TASK_TYPES`), ``train``,
    ``dev``, ``test`` (:class:`SentenceDataset`; ``test`` is empty when the corpus
    has none), ``label_map`` (label name -> id, or None), ``num_classes`` (1 for
    regression; else the size of ``label_map``, or the largest id + 1 without
    one), ``evaluation_metric`` (list of :mod:`multienc.metrics` names) and
    ``main_metric`` (its first entry, used to pick the best model).

    Unlike the seed, ``num_classes`` does not shrink when some label of the map
    never occurs in train/dev, so a model always has an output for every id.
    Empty splits, labels outside the map and unknown metric names raise ValueError.
    """

    def __init__(self, name: str, task_type: str, train: Split, dev: Split, test: Optional[Split] = None,
                 label_map: Optional[Mapping[str, int]] = None,
                 evaluation_metric: Union[str, Sequence[str], None] = None):
        if task_type not in TASK_TYPES:
            raise ValueError(f"unknown task_type {task_type!r}; expected one of {list(TASK_TYPES)}")
        self.name = name
        self.task_type = task_type
        self.train = self._split(train, "train")
        self.dev = self._split(dev, "dev")
        self.test = SentenceDataset() if test is None else self._split(test, "test")
        self.label_map: Optional[Dict[str, int]] = dict(label_map) if label_map else None
        if self.label_map and sorted(self.label_map.values()) != list(range(len(self.label_map))):
            raise ValueError(f"{name}: label_map ids must be 0..{len(self.label_map) - 1}, got {self.label_map}")
        if evaluation_metric is None:
            evaluation_metric = default_metrics(task_type)
        elif isinstance(evaluation_metric, str):
            evaluation_metric = [evaluation_metric]
        evaluation_metric = list(evaluation_metric)
        valid = metrics.metric_names(task_type)
        unknown = [m for m in evaluation_metric if m not in valid]
        if unknown or not evaluation_metric:
            raise ValueError(f"{name}: unknown evaluation metric(s) {unknown} for {task_type!r}; choose from {valid}")
        self.evaluation_metric: List[str] = evaluation_metric
        self.main_metric: str = evaluation_metric[0]
        self._check_texts()
        self.num_classes: int = self._count_classes()

    def _split(self, data: Split, which: str) -> SentenceDataset:
        dataset = data if isinstance(data, SentenceDataset) else SentenceDataset(data)
        if len(dataset) == 0:
            raise ValueError(f"{self.name}: the {which} split is empty; check the files it was read from")
        return dataset

    def _check_texts(self) -> None:
        pair = "pair" in self.task_type
        tagged = self.task_type == "Sequence labeling"
        for split, which in ((self.train, "train"), (self.dev, "dev"), (self.test, "test")):
            for i, s in enumerate(split):
                if isinstance(s.text, tuple) != pair or (s.tokens is not None) != tagged:
                    kind = "a tagged token list" if s.tokens is not None else s.sentence_type
                    raise ValueError(f"{self.name}: {which} sentence {i} is {kind}, which does not fit "
                                     f"task_type {self.task_type!r}")

    @property
    def is_regression(self) -> bool:
        return "regression" in self.task_type

    def _all_label_ids(self, splits: Sequence[SentenceDataset]) -> List[int]:
        ids: List[int] = []
        for split in splits:
            for s in split:
                ids.extend(s.label if isinstance(s.label, list) else [s.label])
        return ids

    def _count_classes(self) -> int:
        if self.is_regression:
            for split, which in ((self.train, "train"), (self.dev, "dev"), (self.test, "test")):
                for i, s in enumerate(split):
                    if not isinstance(s.label, (int, float)) or isinstance(s.label, bool):
                        raise ValueError(f"{self.name}: {which} sentence {i} has label {s.label!r}, "
                                         "regression needs a number")
            return 1
        ids = self._all_label_ids((self.train, self.dev, self.test))
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or i < 0]
        if bad:
            raise ValueError(f"{self.name}: class labels must be non-negative int ids, found {bad[0]!r}")
        num = len(self.label_map) if self.label_map else max(ids) + 1
        if max(ids) >= num:
            raise ValueError(f"{self.name}: label id {max(ids)} is outside the label map of {num} labels")
        return num

    # seed-compatible counters
    @property
    def num_train_samples(self) -> int:
        return len(self.train)

    @property
    def num_dev_samples(self) -> int:
        return len(self.dev)

    @property
    def num_test_samples(self) -> int:
        return len(self.test)

    @property
    def label_dictionary(self) -> Dict[int, int]:
        """Label id -> count over train + dev (tags counted one by one); {} for regression."""
        if self.is_regression:
            return {}
        return dict(sorted(Counter(self._all_label_ids((self.train, self.dev))).items()))

    def label_frequency(self) -> Dict[Union[str, int], int]:
        """Like :attr:`label_dictionary`, keyed by label name where a label_map exists."""
        names = {v: k for k, v in self.label_map.items()} if self.label_map else {}
        return {names.get(i, i): n for i, n in self.label_dictionary.items()}

    def statistics(self) -> Dict[str, object]:
        """Name, task, split sizes, metrics, and (when present) empty texts, label frequency, label map."""
        stats: Dict[str, object] = {
            "Dataset name": self.name,
            "Task type": self.task_type,
            "Train set": len(self.train),
            "Dev set": len(self.dev),
            "Test set": len(self.test),
            "Evaluation metric": self.evaluation_metric,
        }
        empty = {k: d.num_empty for k, d in (("train", self.train), ("dev", self.dev), ("test", self.test))
                 if d.num_empty}
        if empty:
            stats["Empty texts"] = empty
        if not self.is_regression:
            stats["label frequency"] = self.label_frequency()
        if self.label_map:
            stats["label map"] = self.label_map
        return stats

    def show_data_split(self) -> str:
        """``train N + dev N + test N``."""
        return f"train {len(self.train)} + dev {len(self.dev)} + test {len(self.test)}"

    def __str__(self) -> str:
        return "".join(f"{k}: {v}\n" for k, v in self.statistics().items())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.task_type}, {self.show_data_split()}>"


class CSVCorpus(Corpus):
    """A corpus from your own files: ``train.csv``, ``dev.csv`` and optionally ``test.csv``.

    Columns are 0-based indices. The files are TAB-separated without quoting by
    default (as in the seed, despite the name); pass ``delimiter=","`` and
    ``quoting=True`` for standard CSV. Labels are names looked up in
    ``label_map``, integer ids, or floats for a regression ``task_type``.
    ``evaluation_metric`` defaults by task type (see :func:`default_metrics`).

    Fixes the seed, which read the test split from dev.csv.
    """

    def __init__(self, dataset_path: Union[str, Path], label_column: int, sentence_column: int,
                 sentence_pair_column: Optional[int] = None, skip_header: bool = True,
                 label_map: Optional[Mapping[str, int]] = None, task_type: str = "Sentence classification",
                 dataset_name: str = "Custom dataset", evaluation_metric: Union[str, Sequence[str], None] = None,
                 delimiter: str = "\t", quoting: bool = False, encoding: str = "utf-8-sig"):
        folder = Path(dataset_path)
        files = {k: folder / f"{k}.csv" for k in ("train", "dev", "test")}
        missing = [str(files[k]) for k in ("train", "dev") if not files[k].is_file()]
        if missing:
            raise FileNotFoundError(f"CSVCorpus needs train.csv and dev.csv in {folder}; missing: {missing}")
        columns = [sentence_column] if sentence_pair_column is None else [sentence_column, sentence_pair_column]

        def read(path: Path) -> List[Sentence]:
            return read_sentences(path, columns, label_column, task_type, label_map, skip_header=skip_header,
                                  delimiter=delimiter, quoting=quoting, encoding=encoding)

        super().__init__(dataset_name, task_type, read(files["train"]), read(files["dev"]),
                         read(files["test"]) if files["test"].is_file() else None,
                         label_map=label_map, evaluation_metric=evaluation_metric)
