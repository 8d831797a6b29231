"""The 20 corpora of the seed, downloaded from their original addresses.

Each constructor takes ``base_path`` (default :func:`cache_root`, i.e.
``$MULTIENC_CACHE/datasets``) and ``evaluation_metric`` (str or list; the
seed's default when None). Files are downloaded once into
``base_path/<folder>`` (see :func:`multienc.datasets.download.fetch_corpus`),
kept in their original format and parsed on every construction.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from multienc.hub.http import DownloadError
from multienc.datasets.corpus import TASK_TYPES, Corpus
from multienc.datasets.download import cache_root, fetch_corpus
from multienc.datasets.readers import (CorpusFormatError, field, first_per_label, iter_rows, parse_label,
                                       read_column_file, read_lines, read_sentences)
from multienc.datasets.sentence import Sentence

SC, PC, SR, PR, SL = TASK_TYPES
Metric = Union[str, Sequence[str], None]
PathLike = Union[str, Path]

#: Fixed seed for the random shuffles the seed did unseeded (CLICKBAIT, EMOTION_STIMULUS).
SHUFFLE_SEED = 42


def _folder(base_path: Optional[PathLike], name: str) -> Path:
    return (Path(base_path).expanduser() if base_path is not None else cache_root()) / name


def _ids(names: Sequence[str]) -> Dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def bio_label_map(types: Sequence[str]) -> Dict[str, int]:
    """``O`` = 0 and, for the k-th type (k = 1, 2, ...), ``B-type`` = 2k-1, ``I-type`` = 2k."""
    label_map = {"O": 0}
    for k, t in enumerate(types, start=1):
        label_map[f"B-{t}"] = 2 * k - 1
        label_map[f"I-{t}"] = 2 * k
    return label_map


def _shuffled(train: List[Sentence], dev: List[Sentence], seed: int) -> Tuple[List[Sentence], List[Sentence]]:
    rng = random.Random(seed)
    rng.shuffle(dev)
    rng.shuffle(train)
    return train, dev


# --------------------------------------------------------------------------- sentence classification

class CLICKBAIT(Corpus):
    """Clickbait vs. news headlines (Chakraborty et al. 2016): two gzipped line files.

    Dev = the first 2000 headlines of each label (clickbait file first); train =
    the rest, minus duplicates of dev headlines. Both are then shuffled with
    ``shuffle_seed`` (the seed shuffled unseeded, so its split changed per run).
    Each line is one headline (the seed's csv reader cut lines at tabs and
    merged lines that start with a quote).
    """

    URLS = ("https://github.com/bhargaviparanjape/clickbait/raw/master/dataset/clickbait_data.gz",
            "https://github.com/bhargaviparanjape/clickbait/raw/master/dataset/non_clickbait_data.gz")
    LABEL_MAP = _ids(["clickbait", "non clickbait"])

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "accuracy",
                 shuffle_seed: int = SHUFFLE_SEED):
        folder = fetch_corpus(_folder(base_path, "clickbait"), self.URLS, "CLICKBAIT")
        samples = [Sentence(line.strip(), self.LABEL_MAP[label])
                   for file, label in (("clickbait_data", "clickbait"), ("non_clickbait_data", "non clickbait"))
                   for _, line in read_lines(folder / file)]
        train, dev = _shuffled(*first_per_label(samples, 2000), shuffle_seed)
        super().__init__("CLICKBAIT Detecting Clickbaits in Online News Media", SC, train, dev,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


class ISEAR(Corpus):
    """ISEAR emotion reports (7 emotions), the seed's comma CSV ``Emotion,Text``.

    Dev = the first 180 reports of each emotion in file order; train = the rest,
    minus duplicates of dev reports.
    """

    URLS = ("https://raw.githubusercontent.com/lukasgarbas/nlp-text-emotion/master/data/datasets/isear.csv",)
    LABEL_MAP = _ids(["joy", "anger", "fear", "disgust", "shame", "guilt", "sadness"])

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "accuracy"):
        folder = fetch_corpus(_folder(base_path, "isear"), self.URLS, "ISEAR")
        samples = read_sentences(folder / "isear.csv", [1], 0, SC, self.LABEL_MAP, skip_header=True,
                                 delimiter=",", quoting=True)
        train, dev = first_per_label(samples, 180)
        super().__init__("ISEAR Emotion Classification", SC, train, dev,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


class TREC(Corpus):
    """TREC question classification (Li & Roth), 6 coarse classes.

    ``train_5500.label`` is train, ``TREC_10.label`` dev. Lines are ISO-8859-1
    ``COARSE:fine question``; the coarse part is the label.
    """

    URLS = ("https://cogcomp.seas.upenn.edu/Data/QA/QC/train_5500.label",
            "https://cogcomp.seas.upenn.edu/Data/QA/QC/TREC_10.label")
    COARSE = {"ABBR": "abbreviation", "ENTY": "entities", "DESC": "descriptions",
              "HUM": "human_beings", "LOC": "locations", "NUM": "numeric_values"}
    LABEL_MAP = _ids(list(COARSE.values()))

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "accuracy"):
        folder = fetch_corpus(_folder(base_path, "trec"), self.URLS, "TREC")
        train, dev = (self._read(folder / name) for name in ("train_5500.label", "TREC_10.label"))
        super().__init__("TREC Question Classification", SC, train, dev,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)

    @classmethod
    def _read(cls, path: Path) -> List[Sentence]:
        samples = []
        for number, line in read_lines(path, encoding="iso-8859-1"):
            head, _, question = line.partition(" ")
            coarse = head.split(":")[0]
            if ":" not in head or coarse not in cls.COARSE:
                raise CorpusFormatError(path, number, f"expected 'COARSE:fine question' with COARSE one of "
                                        f"{list(cls.COARSE)}, got {head!r}")
            samples.append(Sentence(question.strip(), cls.LABEL_MAP[cls.COARSE[coarse]]))
        return samples


class EMOTION_STIMULUS(Corpus):
    """Emotion-Stimulus (Ghazi et al. 2015), ``Dataset/No Cause.txt`` of Dataset.zip.

    Each line is ``<emotion>sentence<\\emotion>``; the label is the first tag's
    name and the text is the line with all tags removed. Dev = the first 30
    sentences of each emotion; train = the rest minus duplicates of dev; both
    shuffled with ``shuffle_seed`` (unseeded in the seed).
    """

    URLS = ("https://www.eecs.uottawa.ca/~diana/resources/emotion_stimulus_data/Dataset.zip",)
    LABEL_MAP = _ids(["happy", "sad", "surprise", "disgust", "anger", "fear", "shame"])

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = ("accuracy", "f1_score"),
                 shuffle_seed: int = SHUFFLE_SEED):
        folder = fetch_corpus(_folder(base_path, "emotion_stimulus"), self.URLS, "EMOTION_STIMULUS")
        path = folder / "Dataset" / "No Cause.txt"
        samples = []
        for number, line in read_lines(path):
            tag = re.search(r"<(.*?)>", line)
            if tag is None or tag.group(1) not in self.LABEL_MAP:
                found = tag.group(1) if tag else "no tag"
                raise CorpusFormatError(path, number, f"expected a leading <emotion> tag with emotion one of "
                                        f"{list(self.LABEL_MAP)}, found {found!r}")
            samples.append(Sentence(re.sub(r"<.*?>", "", line).strip(), self.LABEL_MAP[tag.group(1)]))
        train, dev = _shuffled(*first_per_label(samples, 30), shuffle_seed)
        super().__init__("EMOTION STIMULUS 7-way emotion classification", SC, train, dev,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


# --------------------------------------------------------------------------- GLUE

GLUE = "https://dl.fbaipublicfiles.com/glue/data/"


class _GlueCorpus(Corpus):
    """A GLUE task: official train and dev TSVs (test files have no labels and are not used).

    The TSVs are read without quoting (quote characters are text). Subclasses
    set the class attributes below.
    """

    NAME = ""
    FOLDER = ""
    URLS: Tuple[str, ...] = ()
    TRAIN = ""
    DEV = ""
    TEXT_COLUMNS: Tuple[int, ...] = ()
    LABEL_COLUMN = 0
    HEADER = True
    SKIP_SHORT_ROWS = False
    LABEL_MAP: Optional[Dict[str, int]] = None
    TASK = SC
    METRIC: Metric = "accuracy"

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = None):
        folder = fetch_corpus(_folder(base_path, self.FOLDER), self.URLS, type(self).__name__)
        train, dev = (self._read(folder / name) for name in (self.TRAIN, self._dev_file()))
        super().__init__(self.NAME, self.TASK, train, dev, label_map=self.LABEL_MAP,
                         evaluation_metric=self.METRIC if evaluation_metric is None else evaluation_metric)

    def _dev_file(self) -> str:
        return self.DEV

    def _read(self, path: Path) -> List[Sentence]:
        return read_sentences(path, self.TEXT_COLUMNS, self.LABEL_COLUMN, self.TASK, self.LABEL_MAP,
                              skip_header=self.HEADER, skip_short_rows=self.SKIP_SHORT_ROWS)


class GLUE_COLA(_GlueCorpus):
    """CoLA, the Corpus of Linguistic Acceptability: header-less TSV, label 0/1 in column 1, text in column 3."""

    NAME = "CoLA Corpus of Linguistic Acceptability"
    FOLDER, URLS, TRAIN, DEV = "glue_cola", (GLUE + "CoLA.zip",), "CoLA/train.tsv", "CoLA/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN, HEADER = (3,), 1, False
    LABEL_MAP = _ids(["not_acceptable", "acceptable"])
    METRIC = ("matthews_corr", "accuracy")


class GLUE_SST2(_GlueCorpus):
    """SST-2, the Stanford Sentiment Treebank (binary): ``sentence<TAB>label``."""

    NAME = "SST-2 Stanford Sentiment Treebank"
    FOLDER, URLS, TRAIN, DEV = "glue_sst2", (GLUE + "SST-2.zip",), "SST-2/train.tsv", "SST-2/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN = (0,), 1
    LABEL_MAP = _ids(["negative", "positive"])


class GLUE_MRPC(_GlueCorpus):
    """MRPC paraphrase pairs (the GLUE TSVs as mirrored by MegEngine): label column 0, texts 3 and 4."""

    NAME = "MRPC Microsoft Research Paraphrase Corpus"
    FOLDER, TRAIN, DEV = "glue_mrpc", "train.tsv", "dev.tsv"
    URLS = tuple(f"https://raw.githubusercontent.com/MegEngine/Models/master/official/nlp/bert/glue_data/MRPC/{f}"
                 for f in ("train.tsv", "dev.tsv"))
    TEXT_COLUMNS, LABEL_COLUMN = (3, 4), 0
    LABEL_MAP = _ids(["not_paraphrase", "paraphrase"])
    TASK, METRIC = PC, ("accuracy", "f1_score")


class GLUE_RTE(_GlueCorpus):
    """RTE textual entailment: ``index sentence1 sentence2 label`` with label names."""

    NAME = "RTE Recognizing Textual Entailment"
    FOLDER, URLS, TRAIN, DEV = "glue_rte", (GLUE + "RTE.zip",), "RTE/train.tsv", "RTE/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN = (1, 2), 3
    LABEL_MAP = _ids(["not_entailment", "entailment"])
    TASK = PC


class GLUE_MNLI(_GlueCorpus):
    """MultiNLI: texts in columns 8 and 9, label = ``gold_label`` (the last column).

    Dev is ``dev_matched.tsv``, or ``dev_mismatched.tsv`` with
    ``evaluate_on_matched=False``. The seed read column 10 (``label1``, the first
    annotator's label), which on the dev files is not the gold label. Rows with
    fewer fields than the header are skipped with a warning.
    """

    NAME = "MNLI Multi-Genre Natural Language Inference"
    FOLDER, URLS, TRAIN = "glue_mnli", (GLUE + "MNLI.zip",), "MNLI/train.tsv"
    TEXT_COLUMNS, LABEL_COLUMN, SKIP_SHORT_ROWS = (8, 9), -1, True
    LABEL_MAP = _ids(["contradiction", "entailment", "neutral"])
    TASK = PC

    def __init__(self, base_path: Optional[PathLike] = None, evaluate_on_matched: bool = True,
                 evaluation_metric: Metric = None):
        self.evaluate_on_matched = evaluate_on_matched
        super().__init__(base_path, evaluation_metric)

    def _dev_file(self) -> str:
        return "MNLI/dev_matched.tsv" if self.evaluate_on_matched else "MNLI/dev_mismatched.tsv"


class GLUE_QNLI(_GlueCorpus):
    """QNLI (v2): ``index question sentence label``."""

    NAME = "QNLI Question-answering Natural Language Inference"
    FOLDER, URLS, TRAIN, DEV = "glue_qnli", (GLUE + "QNLIv2.zip",), "QNLI/train.tsv", "QNLI/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN = (1, 2), 3
    LABEL_MAP = _ids(["not_entailment", "entailment"])
    TASK = PC


class GLUE_QQP(_GlueCorpus):
    """Quora Question Pairs: ``id qid1 qid2 question1 question2 is_duplicate``.

    Rows with missing fields are skipped with a warning.
    """

    NAME = "QQP Quora Question Pairs"
    FOLDER, URLS, TRAIN, DEV = "glue_qqp", (GLUE + "QQP-clean.zip",), "QQP/train.tsv", "QQP/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN, SKIP_SHORT_ROWS = (3, 4), 5, True
    LABEL_MAP = _ids(["not_paraphrase", "paraphrase"])
    TASK, METRIC = PC, ("accuracy", "f1_score")


class GLUE_WNLI(_GlueCorpus):
    """WNLI (Winograd NLI): ``index sentence1 sentence2 label`` with label 0/1."""

    NAME = "WNLI Winograd Schema Challenge"
    FOLDER, URLS, TRAIN, DEV = "glue_wnli", (GLUE + "WNLI.zip",), "WNLI/train.tsv", "WNLI/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN = (1, 2), 3
    LABEL_MAP = _ids(["not_entailment", "entailment"])
    TASK = PC


class GLUE_STSB(_GlueCorpus):
    """STS-B semantic similarity: sentence pair in columns 7 and 8, score 0-5 in column 9."""

    NAME = "STS-B Semantic Textual Similarity Benchmark"
    FOLDER, URLS, TRAIN, DEV = "glue_stsb", (GLUE + "STS-B.zip",), "STS-B/train.tsv", "STS-B/dev.tsv"
    TEXT_COLUMNS, LABEL_COLUMN = (7, 8), 9
    TASK, METRIC = PR, ("pearsonr", "spearmanr")


# --------------------------------------------------------------------------- SICK

class SICK(Corpus):
    """SICK entailment (Marelli et al. 2014): ``SICK.txt`` of SICK.zip, TAB-separated with a header.

    Texts are ``sentence_A``/``sentence_B``, the label ``entailment_label``; the
    ``SemEval_set`` column is ignored as in the seed. Dev = the first 320 pairs of
    each label, train = the rest minus duplicates of dev. (The seed's ``<= 320``
    took 321 per label and its rewritten files then lost their first row each.)
    """

    URLS = ("https://zenodo.org/record/2787612/files/SICK.zip",)
    LABEL_MAP = _ids(["NEUTRAL", "ENTAILMENT", "CONTRADICTION"])

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "accuracy"):
        folder = fetch_corpus(_folder(base_path, "sick"), self.URLS, "SICK")
        samples = read_sentences(folder / "SICK.txt", [1, 2], 3, PC, self.LABEL_MAP, skip_header=True)
        train, dev = first_per_label(samples, 320)
        super().__init__("SICK Sentences Involving Compositional Knowledge (NLI)", PC, train, dev,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


# --------------------------------------------------------------------------- regression

class EMOBANK(Corpus):
    """EmoBank (Buechel & Hahn 2017): CSV ``id,split,V,A,D,text``, split by its ``split`` column.

    ``label_type`` (any case): "valence", "arousal" or "dominance". The seed
    wrote the dev rows as its test split; here test holds the ``test`` rows.
    """

    URLS = ("https://raw.githubusercontent.com/JULIELab/EmoBank/master/corpus/emobank.csv",)
    COLUMNS = {"valence": 2, "arousal": 3, "dominance": 4}

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = ("spearmanr", "pearsonr"),
                 label_type: str = "valence"):
        column = self.COLUMNS.get(label_type.lower())
        if column is None:
            raise ValueError(f"label_type must be one of {list(self.COLUMNS)}, got {label_type!r}")
        self.label_type = label_type.lower()
        folder = fetch_corpus(_folder(base_path, "emobank"), self.URLS, "EMOBANK")
        path = folder / "emobank.csv"
        splits: Dict[str, List[Sentence]] = {"train": [], "dev": [], "test": []}
        for line, row in iter_rows(path, delimiter=",", quoting=True, skip_header=True):
            split = field(row, 1, path, line).strip()
            if split not in splits:
                raise CorpusFormatError(path, line, f"split must be one of {list(splits)}, got {split!r}")
            label = parse_label(field(row, column, path, line), SR, None, path, line)
            splits[split].append(Sentence(field(row, 5, path, line).strip(), label))
        super().__init__("EMOBANK emotions according to Valence-Arousal-Dominance scheme", SR,
                         splits["train"], splits["dev"], splits["test"], evaluation_metric=evaluation_metric)


class FB_VALENCE_AROUSAL(Corpus):
    """Valence and arousal of Facebook posts (Preotiuc-Pietro et al. 2016).

    CSV ``Anonymized Message,Valence1,Valence2,Arousal1,Arousal2``; the label is
    the first annotator's score (``Valence1`` or ``Arousal1``, as in the seed).
    Posts with an empty message are dropped; dev = the first 800 posts, train =
    the rest. ``label_type``: "valence" or "arousal" (the seed silently took
    arousal for any other value; here that is an error).
    """

    URLS = ("http://wwbp.org/downloads/public_data/dataset-fb-valence-arousal-anon.csv",)
    COLUMNS = {"valence": 1, "arousal": 3}

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = ("spearmanr", "pearsonr"),
                 label_type: str = "valence"):
        column = self.COLUMNS.get(label_type.lower())
        if column is None:
            raise ValueError(f"label_type must be one of {list(self.COLUMNS)}, got {label_type!r}")
        self.label_type = label_type.lower()
        folder = fetch_corpus(_folder(base_path, "fb_valence_arousal"), self.URLS, "FB_VALENCE_AROUSAL")
        path = folder / "dataset-fb-valence-arousal-anon.csv"
        samples = []
        for line, row in iter_rows(path, delimiter=",", quoting=True, skip_header=True):
            text = field(row, 0, path, line).strip()
            label = parse_label(field(row, column, path, line), SR, None, path, line)
            if text:
                samples.append(Sentence(text, label))
        super().__init__("FBVA Predicting Valence and Arousal in Facebook Posts", SR, samples[800:], samples[:800],
                         evaluation_metric=evaluation_metric)


# --------------------------------------------------------------------------- sequence labeling

class CONLL_NER(Corpus):
    """CoNLL-2003 English NER (PER, ORG, LOC, MISC), IOB2 tags.

    Downloads the seed's ``conll2003.zip`` (``train.txt``, ``valid.txt`` -> dev,
    ``test.txt``; word in column 0, tag in column 3). The data is derived from
    Reuters RCV1 and its licence restricts redistribution, so you can instead
    pass ``local_path``: a folder with the official ``eng.train``, ``eng.testa``
    and ``eng.testb`` (their IOB1 tags are converted to IOB2) or with
    ``train.txt``/``valid.txt``/``test.txt``. ``-DOCSTART-`` lines are document
    separators, not sentences (the seed kept each as a one-word sentence), and a
    last sentence without a trailing blank line is kept (the seed dropped it).
    """

    URLS = ("https://data.deepai.org/conll2003.zip",)
    LABEL_MAP = bio_label_map(["PER", "ORG", "LOC", "MISC"])
    FILE_SETS = (("train.txt", "valid.txt", "test.txt"), ("eng.train", "eng.testa", "eng.testb"))
    HELP = ("CoNLL-2003 may not be redistributed (it is derived from the Reuters RCV1 corpus). Get the official "
            "eng.train, eng.testa and eng.testb (annotations: https://www.clips.uantwerpen.be/conll2003/ner/, "
            "texts: the Reuters corpus from NIST, https://trec.nist.gov/data/reuters/reuters.html) and pass "
            "CONLL_NER(local_path='folder/with/those/files')")

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "f1_score",
                 local_path: Optional[PathLike] = None):
        if local_path is not None:
            folder = Path(local_path).expanduser()
            names = next((s for s in self.FILE_SETS if all((folder / n).is_file() for n in s)), None)
            if names is None:
                raise FileNotFoundError(f"{folder} must hold {' + '.join(self.FILE_SETS[1])} "
                                        f"or {' + '.join(self.FILE_SETS[0])}. {self.HELP}")
        else:
            try:
                folder = fetch_corpus(_folder(base_path, "conll2003"), self.URLS, "CONLL_NER")
            except DownloadError as e:
                raise DownloadError(e.url, e.status, f"could not download CoNLL-2003: {e}. {self.HELP}") from e
            names = self.FILE_SETS[0]
        train, dev, test = (read_column_file(folder / n, self.LABEL_MAP, 0, 3, to_iob2=True) for n in names)
        super().__init__("CONLL 4-way Named Entity Recognition", SL, train, dev, test,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


class WNUT_NER(Corpus):
    """WNUT-17 emerging entities: ``word<TAB>tag`` files with blank (or tab-only) lines between sentences.

    Test is the official gold ``emerging.test.annotated``; the seed downloaded
    ``emerging.test.conll``, whose tag column holds several annotators' tags
    joined by commas, and kept the first.
    """

    FILES = ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated")
    URLS = tuple(f"https://raw.githubusercontent.com/leondz/emerging_entities_17/master/{f}" for f in FILES)
    LABEL_MAP = bio_label_map(["corporation", "creative-work", "group", "location", "person", "product"])

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = "f1_score"):
        folder = fetch_corpus(_folder(base_path, "wnut17"), self.URLS, "WNUT_NER")
        train, dev, test = (read_column_file(folder / f, self.LABEL_MAP, 0, 1, delimiter="\t") for f in self.FILES)
        super().__init__("WNUT 17 Emerging Entities task", SL, train, dev, test,
                         label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


class _MitCorpus(Corpus):
    """An MIT spoken-query corpus: ``tag<TAB>word`` ``.bio`` files; the test file is the dev split."""

    NAME = ""
    FOLDER = ""
    URLS: Tuple[str, ...] = ()
    LABEL_MAP: Dict[str, int] = {}

    def __init__(self, base_path: Optional[PathLike] = None, evaluation_metric: Metric = ("accuracy", "f1_score")):
        folder = fetch_corpus(_folder(base_path, self.FOLDER), self.URLS, type(self).__name__)
        train, dev = (read_column_file(folder / url.rsplit("/", 1)[-1], self.LABEL_MAP, 1, 0, delimiter="\t")
                      for url in self.URLS)
        super().__init__(self.NAME, SL, train, dev, label_map=self.LABEL_MAP, evaluation_metric=evaluation_metric)


class MIT_MOVIE_NER(_MitCorpus):
    """MIT Movie trivia queries (trivia10k13), 12 entity types."""

    NAME, FOLDER = "MIT MOVIE Named Entity Recognition", "mit_movie"
    URLS = tuple(f"https://groups.csail.mit.edu/sls/downloads/movie/trivia10k13{s}.bio" for s in ("train", "test"))
    LABEL_MAP = bio_label_map(["Actor", "Award", "Character_Name", "Director", "Genre", "Opinion", "Origin", "Plot",
                               "Quote", "Relationship", "Soundtrack", "Year"])


class MIT_RESTAURANT_NER(_MitCorpus):
    """MIT Restaurant queries, 8 entity types."""

    NAME, FOLDER = "MIT RESTAURANT Named Entity Recognition", "mit_restaurant"
    URLS = tuple(f"https://groups.csail.mit.edu/sls/downloads/restaurant/restaurant{s}.bio" for s in ("train", "test"))
    LABEL_MAP = bio_label_map(["Amenity", "Cuisine", "Dish", "Hours", "Location", "Price", "Rating",
                               "Restaurant_Name"])
