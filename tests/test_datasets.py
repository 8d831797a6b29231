"""The 20 corpora built through their normal constructors from a local HTTP mirror
(MULTIENC_DATASETS_MIRROR) serving small files in each source's original format."""
import gzip
import io
import tarfile
import warnings
import zipfile

import pytest

from multienc import datasets as ds
from multienc.hub.http import DownloadError
from multienc.datasets import CorpusFormatError
from multienc.datasets.download import MARKER, extract

import _data_fixtures as fx
from _data_server import MirrorServer

SC, PC, SR, PR, SL = ds.TASK_TYPES


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "datasets"


# name: (folder, task, train, dev, test, num_classes, metrics, corpus name)
EXPECTED = {
    "CLICKBAIT": ("clickbait", SC, 4, 4000, 0, 2, ["accuracy"], "CLICKBAIT Detecting Clickbaits in Online News Media"),
    "ISEAR": ("isear", SC, 15, 1260, 0, 7, ["accuracy"], "ISEAR Emotion Classification"),
    "TREC": ("trec", SC, 6, 3, 0, 6, ["accuracy"], "TREC Question Classification"),
    "EMOTION_STIMULUS": ("emotion_stimulus", SC, 7, 210, 0, 7, ["accuracy", "f1_score"],
                         "EMOTION STIMULUS 7-way emotion classification"),
    "GLUE_COLA": ("glue_cola", SC, 3, 2, 0, 2, ["matthews_corr", "accuracy"],
                  "CoLA Corpus of Linguistic Acceptability"),
    "GLUE_SST2": ("glue_sst2", SC, 3, 1, 0, 2, ["accuracy"], "SST-2 Stanford Sentiment Treebank"),
    "GLUE_MRPC": ("glue_mrpc", PC, 2, 1, 0, 2, ["accuracy", "f1_score"], "MRPC Microsoft Research Paraphrase Corpus"),
    "GLUE_RTE": ("glue_rte", PC, 2, 1, 0, 2, ["accuracy"], "RTE Recognizing Textual Entailment"),
    "GLUE_MNLI": ("glue_mnli", PC, 3, 2, 0, 3, ["accuracy"], "MNLI Multi-Genre Natural Language Inference"),
    "GLUE_QNLI": ("glue_qnli", PC, 2, 1, 0, 2, ["accuracy"], "QNLI Question-answering Natural Language Inference"),
    "GLUE_QQP": ("glue_qqp", PC, 2, 1, 0, 2, ["accuracy", "f1_score"], "QQP Quora Question Pairs"),
    "GLUE_WNLI": ("glue_wnli", PC, 2, 1, 0, 2, ["accuracy"], "WNLI Winograd Schema Challenge"),
    "SICK": ("sick", PC, 6, 960, 0, 3, ["accuracy"], "SICK Sentences Involving Compositional Knowledge (NLI)"),
    "GLUE_STSB": ("glue_stsb", PR, 2, 1, 0, 1, ["pearsonr", "spearmanr"],
                  "STS-B Semantic Textual Similarity Benchmark"),
    "EMOBANK": ("emobank", SR, 3, 1, 1, 1, ["spearmanr", "pearsonr"],
                "EMOBANK emotions according to Valence-Arousal-Dominance scheme"),
    "FB_VALENCE_AROUSAL": ("fb_valence_arousal", SR, 3, 800, 0, 1, ["spearmanr", "pearsonr"],
                           "FBVA Predicting Valence and Arousal in Facebook Posts"),
    "CONLL_NER": ("conll2003", SL, 3, 1, 2, 9, ["f1_score"], "CONLL 4-way Named Entity Recognition"),
    "WNUT_NER": ("wnut17", SL, 3, 2, 2, 13, ["f1_score"], "WNUT 17 Emerging Entities task"),
    "MIT_MOVIE_NER": ("mit_movie", SL, 2, 1, 0, 25, ["accuracy", "f1_score"], "MIT MOVIE Named Entity Recognition"),
    "MIT_RESTAURANT_NER": ("mit_restaurant", SL, 3, 1, 0, 17, ["accuracy", "f1_score"],
                           "MIT RESTAURANT Named Entity Recognition"),
}


def build(name, mirror, **kwargs):
    fx.serve(name, mirror)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QQP/MNLI fixtures hold a short row on purpose
        return ds.CORPORA[name](**kwargs)


def test_all_twenty_corpora_are_registered():
    assert sorted(ds.CORPORA) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_downloads_once_and_has_seed_metadata(name, mirror, cache):
    folder, task, n_train, n_dev, n_test, n_classes, metric_names, title = EXPECTED[name]
    corpus = build(name, mirror)
    cls = ds.CORPORA[name]
    urls = cls.URLS
    assert all(mirror.count(u) == 1 for u in urls), mirror.requests
    assert (cache / folder / MARKER).is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "staging folder left behind"
    assert (corpus.name, corpus.task_type) == (title, task)
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (n_train, n_dev, n_test)
    assert (corpus.num_train_samples, corpus.num_dev_samples, corpus.num_test_samples) == (n_train, n_dev, n_test)
    assert corpus.num_classes == n_classes
    assert corpus.evaluation_metric == metric_names and corpus.main_metric == metric_names[0]
    if corpus.label_map:
        assert sorted(corpus.label_map.values()) == list(range(n_classes))
    text = str(corpus)
    assert f"Dataset name: {title}\n" in text and f"Train set: {n_train}\n" in text
    assert corpus.show_data_split() == f"train {n_train} + dev {n_dev} + test {n_test}"
    for split in (corpus.train, corpus.dev, corpus.test):
        for s in split:
            if task == SL:
                assert s.text == " ".join(s.tokens) and len(s.label) == len(s.tokens)
                assert all(0 <= t < n_classes for t in s.label)
            elif task in (SR, PR):
                assert isinstance(s.label, float)
            else:
                assert isinstance(s.label, int) and 0 <= s.label < n_classes
            assert isinstance(s.text, tuple) == (task in (PC, PR))

    # a second construction reads the cache and downloads nothing
    before = len(mirror.requests)
    again = build(name, mirror)
    assert len(mirror.requests) == before
    assert [s.text for s in again.train] == [s.text for s in corpus.train]
    assert [s.label for s in again.dev] == [s.label for s in corpus.dev]


def test_base_path_overrides_the_cache(mirror, tmp_path):
    fx.serve("TREC", mirror)
    corpus = ds.TREC(base_path=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "trec" / MARKER).is_file()
    assert not (tmp_path / "cache").exists()
    assert len(corpus.train) == 6


# --------------------------------------------------------------------------- specific rows

def test_clickbait_rows_split_and_fixed_shuffle(mirror):
    corpus = build("CLICKBAIT", mirror)
    bait, news = corpus.label_map["clickbait"], corpus.label_map["non clickbait"]
    assert corpus.label_map == {"clickbait": 0, "non clickbait": 1}
    assert sorted(s.text for s in corpus.train) == [
        "Senate passes budget bill 2000", "Senate passes budget bill 2001",
        "You Won't Believe What Happened Number 2000", "You Won't Believe What Happened Number 2001"]
    dev = {s.text: s.label for s in corpus.dev}
    assert dev['"Star Wars" Trailer Is Here To Give You Chills'] == bait
    assert dev["Senate passes budget bill 1999"] == news
    assert sum(label == bait for label in dev.values()) == 2000
    # deterministic shuffle: same order every time, another seed gives another order
    order = [s.text for s in corpus.dev]
    assert order != sorted(order, key=lambda t: (not t.startswith(("You", '"')), t))
    assert [s.text for s in ds.CLICKBAIT().dev] == order
    assert [s.text for s in ds.CLICKBAIT(shuffle_seed=7).dev] != order


def test_isear_rows(mirror):
    corpus = build("ISEAR", mirror)
    assert corpus.dev[0].text == "During the period of falling in love, each time that we met."
    assert corpus.dev[0].label == corpus.label_map["joy"] == 0
    assert corpus.dev[6].text == "When event 0 made me feel sadness." and corpus.dev[6].label == 6
    assert corpus.train[-1].text == 'I said "no" to a friend, twice.' and corpus.train[-1].label == 5
    assert corpus.train[0].text == "When event 180 made me feel joy."
    assert corpus.label_dictionary == {i: 182 + (i == 5) for i in range(7)}


def test_trec_rows_and_latin1(mirror):
    corpus = build("TREC", mirror)
    assert corpus.train[0].text == "How did serfdom develop in and then leave Russia ?"
    assert [s.label for s in corpus.train] == [2, 1, 0, 3, 4, 5]
    assert corpus.train[3].text == "Who was the sister\u00f0city mayor ?"
    assert corpus.dev[1].text == "What county is Modesto , California in ?"
    assert corpus.dev[1].label == corpus.label_map["locations"]


def test_emotion_stimulus_rows(mirror):
    corpus = build("EMOTION_STIMULUS", mirror)
    texts = {s.text: s.label for s in corpus.dev}
    assert texts["I suppose I am happy being so ` tiny' ; it is fine ."] == corpus.label_map["happy"]
    assert sorted(s.text for s in corpus.train) == sorted(f"Sentence 30 about feeling {e} today ."
                                                          for e in fx.EMOTIONS)
    assert corpus.statistics()["label frequency"] == {e: 31 for e in fx.EMOTIONS}


def test_glue_cola_rows(mirror):
    corpus = build("GLUE_COLA", mirror)
    assert corpus.train[0].text == "Our friends won't buy this analysis, let alone the next one we propose."
    assert [s.label for s in corpus.train] == [1, 0, 1]
    assert corpus.train[2].text == 'He said "hello" to them.'
    assert corpus.dev[1].text == "The more we study verbs, the crazier." and corpus.dev[1].label == 0
    assert corpus.label_map == {"not_acceptable": 0, "acceptable": 1}


def test_glue_sst2_rows(mirror):
    corpus = build("GLUE_SST2", mirror)
    assert corpus.train[0].text == "hide new secretions from the parental units"
    assert [s.label for s in corpus.train] == [0, 1, 0]
    assert corpus.dev[0].text == "it 's a charming and often affecting journey ."


def test_glue_mrpc_rows(mirror):
    corpus = build("GLUE_MRPC", mirror)
    assert corpus.train[0].text == ('Amrozi accused his brother , whom he called " the witness " .',
                                    'Referring to him as only " the witness " , Amrozi accused his brother .')
    assert corpus.train[0].label == 1 and corpus.train[1].label == 0
    assert corpus.train[0].sentence_type == "sentence-pair"
    assert corpus.dev[0].text[1] == '" The pie business does not fit our strategy .'


def test_glue_rte_qnli_wnli_rows(mirror):
    rte = build("GLUE_RTE", mirror)
    assert rte.train[0].text == ("No Weapons of Mass Destruction Found in Iraq Yet.",
                                 "Weapons of Mass Destruction Found in Iraq.")
    assert [s.label for s in rte.train] == [0, 1]
    qnli = build("GLUE_QNLI", mirror)
    assert qnli.train[1].text[0] == "Which missile batteries often have individual launchers?"
    assert [s.label for s in qnli.train] == [0, 1] and qnli.dev[0].label == 1
    wnli = build("GLUE_WNLI", mirror)
    assert wnli.train[1].text == ("Steve follows Fred's example in everything. He influences him hugely.",
                                  "Steve influences him hugely.")
    assert [s.label for s in wnli.train] == [1, 0]


def test_glue_mnli_gold_label_and_mismatched(mirror):
    fx.serve("GLUE_MNLI", mirror)
    with pytest.warns(UserWarning, match=r"train.tsv: skipped 1 rows with fewer than 12 columns \(lines 4\)"):
        corpus = ds.GLUE_MNLI()
    lm = corpus.label_map
    assert lm == {"contradiction": 0, "entailment": 1, "neutral": 2}
    assert corpus.train[1].text == ('He said "yes" quietly.', "He spoke.")
    assert [s.label for s in corpus.train] == [lm["neutral"], lm["entailment"], lm["contradiction"]]
    # gold_label, not label1 (which says entailment for this row)
    assert corpus.dev[0].text[0] == "The new rights are nice enough" and corpus.dev[0].label == lm["neutral"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mismatched = ds.GLUE_MNLI(evaluate_on_matched=False)
    assert len(mismatched.dev) == 1 and mismatched.dev[0].text[0] == "Your contribution helped make it possible."


def test_glue_qqp_skips_rows_with_missing_fields(mirror):
    fx.serve("GLUE_QQP", mirror)
    with pytest.warns(UserWarning, match=r"skipped 1 rows with fewer than 6 columns \(lines 3\)"):
        corpus = ds.GLUE_QQP()
    assert [s.text[0] for s in corpus.train] == ["How is the life of a math student?",
                                                 "What causes stool color to change to yellow?"]
    assert [s.label for s in corpus.train] == [0, 1]


def test_glue_stsb_rows(mirror):
    corpus = build("GLUE_STSB", mirror)
    assert corpus.train[1].text == ("A man is playing a large flute.", "A man is playing a flute.")
    assert [s.label for s in corpus.train] == [5.0, 3.8]
    assert corpus.label_map is None and "label frequency" not in corpus.statistics()


def test_sick_split_320_per_label(mirror):
    corpus = build("SICK", mirror)
    assert corpus.dev[0].text == ("A group of 0 kids is playing", "Some kids neutral 0")
    assert corpus.dev[0].label == corpus.label_map["NEUTRAL"] == 0
    assert corpus.label_frequency() == {"NEUTRAL": 322, "ENTAILMENT": 322, "CONTRADICTION": 322}
    assert [(s.text[0], s.label) for s in corpus.train] == [
        (f"A group of {i} kids is playing", label) for i in (320, 321) for label in (0, 1, 2)]


def test_emobank_splits_and_label_types(mirror):
    corpus = build("EMOBANK", mirror)
    assert corpus.train[0].text == 'Remember what she said in my last letter? "'
    assert [s.label for s in corpus.train] == [3.0, 3.44, 3.0]
    assert corpus.dev[0].text == "Sherry, you are always welcome." and corpus.dev[0].label == 3.55
    assert corpus.test[0].text == "If I wasn't working here." and corpus.test[0].label == 2.8
    assert [s.label for s in ds.EMOBANK(label_type="Arousal").train] == [3.0, 3.0, 3.1]
    assert [s.label for s in ds.EMOBANK(label_type="dominance").test] == [2.8]
    with pytest.raises(ValueError, match="label_type must be one of"):
        ds.EMOBANK(label_type="joy")


def test_fb_valence_arousal_rows(mirror):
    corpus = build("FB_VALENCE_AROUSAL", mirror)
    assert corpus.dev[0].text == "We'll be off and running to a lil' place called SILVERWOOD today! Can't wait! :)"
    assert corpus.dev[0].label == 9.0
    assert corpus.dev[1].text == "thinks that for girls, boys are easily found." and corpus.dev[1].label == 4.0
    assert corpus.dev[2].text == "post number 0"
    assert [s.text for s in corpus.train] == ["post number 798", "post number 799", "post number 800"]
    arousal = ds.FB_VALENCE_AROUSAL(label_type="arousal")
    assert arousal.dev[0].label == 8.0 and arousal.dev[1].label == 6.0
    with pytest.raises(ValueError, match="label_type must be one of"):
        ds.FB_VALENCE_AROUSAL(label_type="dominance")


def test_conll_rows_docstart_and_last_sentence(mirror):
    corpus = build("CONLL_NER", mirror)
    lm = corpus.label_map
    assert lm == {"O": 0, "B-PER": 1, "I-PER": 2, "B-ORG": 3, "I-ORG": 4, "B-LOC": 5, "I-LOC": 6,
                  "B-MISC": 7, "I-MISC": 8}
    assert corpus.train[0].tokens == ["EU", "rejects", "German", "call", "."]
    assert corpus.train[0].label == [3, 0, 7, 0, 0]
    assert corpus.train[0].text == "EU rejects German call ."
    assert corpus.train[2].tokens == ["BRUSSELS", "1996-08-22"]
    assert all("-DOCSTART-" not in s.tokens for s in corpus.train)
    assert corpus.test[1].tokens == ["Nadim", "Ladki"] and corpus.test[1].label == [1, 2]


def test_wnut_rows_and_tab_only_breaks(mirror):
    corpus = build("WNUT_NER", mirror)
    lm = corpus.label_map
    assert lm["B-creative-work"] == 3 and lm["I-product"] == 12
    assert corpus.train[0].tokens[-3:] == ["Empire", "State", "Building"]
    assert corpus.train[0].label[-3:] == [lm["B-location"], lm["I-location"], lm["I-location"]]
    assert corpus.train[1].tokens == ["Channel", "!"] and corpus.train[1].label == [lm["I-corporation"], 0]
    assert corpus.train[2].tokens == ["Go", "New", "York", "Giants"]
    assert corpus.test[0].label == [0, lm["B-creative-work"], lm["I-creative-work"]]


def test_mit_rows(mirror):
    movie = build("MIT_MOVIE_NER", mirror)
    lm = movie.label_map
    assert movie.train[0].tokens == ["steve", "mcqueen", "provided", "a", "thrilling"]
    assert movie.train[0].label == [lm["B-Actor"], lm["I-Actor"], 0, 0, lm["B-Plot"]]
    assert movie.dev[0].tokens == ["spielberg", "western"] and movie.dev[0].label == [7, 9]
    rest = build("MIT_RESTAURANT_NER", mirror)
    assert rest.train[1].tokens == ["34"] and rest.train[1].label == [0]
    assert rest.dev[0].label == [0, rest.label_map["B-Price"], 3, 5, 9]
    assert rest.label_map["I-Restaurant_Name"] == 16


# --------------------------------------------------------------------------- CoNLL without download

def test_conll_download_failure_says_where_to_get_the_data(mirror, cache):
    with pytest.raises(DownloadError) as err:
        ds.CONLL_NER()
    message = str(err.value)
    assert "data.deepai.org/conll2003.zip" in message and "HTTP 404" in str(err.value.__cause__)
    assert "local_path" in message and "eng.testb" in message and "clips.uantwerpen.be" in message
    assert not (cache / "conll2003").exists()


def test_conll_local_official_files_iob1_to_iob2(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIENC_DATASETS_MIRROR", "http://127.0.0.1:9")  # would fail if contacted
    folder = tmp_path / "conll"
    folder.mkdir()
    (folder / "eng.train").write_text("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n"
                                      "German JJ I-NP I-MISC\nBritish JJ I-NP B-MISC\n\n")
    (folder / "eng.testa").write_text("Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n")
    (folder / "eng.testb").write_text("Japan NNP I-NP I-LOC\n")
    corpus = ds.CONLL_NER(local_path=folder, base_path=tmp_path / "unused")
    lm = corpus.label_map
    assert corpus.train[0].label == [lm["B-ORG"], 0, lm["B-MISC"], lm["B-MISC"]]
    assert corpus.dev[0].label == [lm["B-PER"], lm["I-PER"]]
    assert corpus.test[0].label == [lm["B-LOC"]]
    assert not (tmp_path / "unused").exists()
    with pytest.raises(FileNotFoundError, match="eng.train \\+ eng.testa \\+ eng.testb"):
        ds.CONLL_NER(local_path=tmp_path)


# --------------------------------------------------------------------------- bad input

def test_missing_column_names_file_and_line(mirror, cache):
    fx.serve("GLUE_COLA", mirror)
    mirror.put_zip(fx.GLUE + "CoLA.zip", {"CoLA/train.tsv": "gj04\t1\t\tFine.\ngj04\t0\n",
                                          "CoLA/dev.tsv": "gj04\t1\t\tFine.\n"})
    with pytest.raises(CorpusFormatError, match=r"CoLA/train.tsv, line 2: expected at least 4 columns, found 2"):
        ds.GLUE_COLA()


def test_unknown_label_names_file_and_line(mirror):
    mirror.put_zip(fx.GLUE + "RTE.zip", {
        "RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n",
        "RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"})
    with pytest.raises(CorpusFormatError, match=r"RTE/train.tsv, line 3: unknown label 'maybe'; expected one of "
                                                r"\['not_entailment', 'entailment'\]"):
        ds.GLUE_RTE()


def test_unknown_tag_and_label_id_name_file_and_line(mirror, tmp_path):
    mirror.put(ds.MIT_MOVIE_NER.URLS[0], "B-Actor\tsteve\nB-Villain\tjoker\n")
    mirror.put(ds.MIT_MOVIE_NER.URLS[1], "O\tx\n")
    with pytest.raises(CorpusFormatError, match=r"trivia10k13train.bio, line 2: unknown tag 'B-Villain'"):
        ds.MIT_MOVIE_NER()
    mirror.put_zip(fx.GLUE + "WNLI.zip", {"WNLI/train.tsv": "i\ts1\ts2\tl\n0\ta\tb\t2\n",
                                          "WNLI/dev.tsv": "i\ts1\ts2\tl\n0\ta\tb\t1\n"})
    with pytest.raises(CorpusFormatError, match=r"WNLI/train.tsv, line 2: label id 2 is not in the label map"):
        ds.GLUE_WNLI()


def test_empty_split_is_a_clear_error(mirror, tmp_path):
    fx.serve("EMOBANK", mirror)
    mirror.put(ds.EMOBANK.URLS[0], "id,split,V,A,D,text\na,train,3,3,3,x\nb,dev,3,3,3,y\n")
    with pytest.raises(ValueError, match="EMOBANK .*: the test split is empty"):
        ds.EMOBANK()
    mirror.put_zip(fx.GLUE + "SST-2.zip", {"SST-2/train.tsv": "sentence\tlabel\nok\t1\n",
                                           "SST-2/dev.tsv": "sentence\tlabel\n"})
    with pytest.raises(CorpusFormatError, match=r"SST-2/dev.tsv: no samples found"):
        ds.GLUE_SST2()


@pytest.mark.parametrize("name,url", [("GLUE_COLA", fx.GLUE + "CoLA.zip"),
                                      ("CLICKBAIT", ds.CLICKBAIT.URLS[1]),
                                      ("TREC", ds.TREC.URLS[1])])
def test_html_error_page_is_rejected_and_nothing_cached(name, url, mirror, cache):
    fx.serve(name, mirror)
    page = b"<!DOCTYPE html><html><body><h1>Access denied</h1></body></html>"
    mirror.answer(url, 200, page)
    with pytest.raises(DownloadError, match="HTML page") as err:
        ds.CORPORA[name]()
    assert err.value.url.endswith(MirrorServer.path_of(url))
    assert not cache.exists() or list(cache.iterdir()) == []
    # once the mirror serves the real file, the next run downloads everything again
    del mirror.canned[MirrorServer.path_of(url)]
    assert len(ds.CORPORA[name]().train) == EXPECTED[name][2]


def test_http_error_and_truncated_gzip_leave_nothing(mirror, cache):
    with pytest.raises(DownloadError, match=r"server answered 404.*isear.csv, HTTP 404"):
        ds.ISEAR()
    assert not cache.exists() or list(cache.iterdir()) == []
    fx.serve("CLICKBAIT", mirror)
    good = gzip.compress(b"Headline one\n\n" * 50)
    mirror.put(ds.CLICKBAIT.URLS[0], good[: len(good) // 2])
    with pytest.raises(DownloadError, match="expected a gzip file"):
        ds.CLICKBAIT()
    assert list(cache.iterdir()) == []


def test_unmarked_leftovers_are_not_trusted(mirror, cache):
    fx.serve("TREC", mirror)
    stale = cache / "trec"
    stale.mkdir(parents=True)
    (stale / "train_5500.label").write_text("DESC:def half a file")
    corpus = ds.TREC()
    assert len(corpus.train) == 6 and mirror.count(ds.TREC.URLS[0]) == 1


def test_mirror_url_rule(monkeypatch):
    monkeypatch.setenv("MULTIENC_DATASETS_MIRROR", "http://m.example/root/")
    assert ds.resolve_url("https://zenodo.org/record/2787612/files/SICK.zip") == \
        "http://m.example/root/zenodo.org/record/2787612/files/SICK.zip"
    assert ds.resolve_url("http://wwbp.org/downloads/x.csv") == "http://m.example/root/wwbp.org/downloads/x.csv"
    monkeypatch.delenv("MULTIENC_DATASETS_MIRROR")
    assert ds.resolve_url("https://a.b/c") == "https://a.b/c"


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("MULTIENC_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ds.cache_root() == tmp_path / ".cache" / "multienc" / "datasets"
    monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "c"))
    assert ds.cache_root() == tmp_path / "c" / "datasets"


# --------------------------------------------------------------------------- Corpus, CSVCorpus, Sentence

def test_csv_corpus_pairs_label_map_and_own_test_file(tmp_path):
    (tmp_path / "train.csv").write_text("label\ta\tb\nyes\tA cat.\tA pet.\nno\tA cat.\tA car.\n")
    (tmp_path / "dev.csv").write_text("label\ta\tb\nno\tRain.\tSun.\n")
    (tmp_path / "test.csv").write_text("label\ta\tb\nyes\tHi.\tHello.\nyes\tBye.\tSee you.\n")
    corpus = ds.CSVCorpus(tmp_path, label_column=0, sentence_column=1, sentence_pair_column=2,
                          label_map={"no": 0, "yes": 1}, task_type=PC, dataset_name="Pairs")
    assert corpus.train[0].text == ("A cat.", "A pet.") and [s.label for s in corpus.train] == [1, 0]
    assert [s.text[0] for s in corpus.test] == ["Hi.", "Bye."]  # read from test.csv, not dev.csv
    assert corpus.evaluation_metric == ["accuracy", "f1_score"] and corpus.num_classes == 2


def test_csv_corpus_regression_quoted_csv_and_missing_files(tmp_path):
    (tmp_path / "train.csv").write_text('text,score\n"Hello, world",0.5\nPlain,1.25\n')
    (tmp_path / "dev.csv").write_text("text,score\nOther,2\n")
    corpus = ds.CSVCorpus(tmp_path, label_column=1, sentence_column=0, task_type=SR, delimiter=",", quoting=True,
                          evaluation_metric="pearsonr")
    assert [(s.text, s.label) for s in corpus.train] == [("Hello, world", 0.5), ("Plain", 1.25)]
    assert len(corpus.test) == 0 and corpus.num_classes == 1 and corpus.main_metric == "pearsonr"
    (tmp_path / "dev.csv").write_text("text,score\nOther,high\n")
    with pytest.raises(CorpusFormatError, match=r"dev.csv, line 2: label 'high' is not a number"):
        ds.CSVCorpus(tmp_path, label_column=1, sentence_column=0, task_type=SR, delimiter=",", quoting=True)
    with pytest.raises(FileNotFoundError, match="needs train.csv and dev.csv"):
        ds.CSVCorpus(tmp_path / "nowhere", label_column=0, sentence_column=1)


def test_corpus_validates_its_inputs():
    train = [ds.Sentence("a", 0), ds.Sentence("b", 1)]
    with pytest.raises(ValueError, match="the train split is empty"):
        ds.Corpus("X", SC, [], train)
    with pytest.raises(ValueError, match="unknown task_type"):
        ds.Corpus("X", "classification", train, train)
    with pytest.raises(ValueError, match=r"unknown evaluation metric\(s\) \['pearsonr'\]"):
        ds.Corpus("X", SC, train, train, evaluation_metric=["accuracy", "pearsonr"])
    with pytest.raises(ValueError, match="label id 1 is outside the label map of 1 labels"):
        ds.Corpus("X", SC, train, train, label_map={"a": 0})
    with pytest.raises(ValueError, match="train sentence 0 is single-sentence, which does not fit"):
        ds.Corpus("X", PC, train, train)
    with pytest.raises(ValueError, match="regression needs a number"):
        ds.Corpus("X", SR, [ds.Sentence("a", None)], train)


def test_corpus_defaults_counts_and_summary():
    train = [ds.Sentence("good", 1), ds.Sentence("", 0), ds.Sentence("bad", 0), ds.Sentence("  ", 2)]
    corpus = ds.Corpus("Toy", SC, train, [ds.Sentence("fine", 1)], label_map={"neg": 0, "pos": 1, "mixed": 2})
    assert corpus.evaluation_metric == ["accuracy", "f1_score"] and corpus.main_metric == "accuracy"
    assert corpus.num_classes == 3 and corpus.label_dictionary == {0: 2, 1: 2, 2: 1}
    assert corpus.train.num_empty == 2 and [s.text for s in corpus.train.non_empty()] == ["good", "bad"]
    assert str(corpus) == ("Dataset name: Toy\nTask type: Sentence classification\nTrain set: 4\nDev set: 1\n"
                           "Test set: 0\nEvaluation metric: ['accuracy', 'f1_score']\nEmpty texts: {'train': 2}\n"
                           "label frequency: {'neg': 2, 'pos': 2, 'mixed': 1}\n"
                           "label map: {'neg': 0, 'pos': 1, 'mixed': 2}\n")
    assert ds.Corpus("T", SL, [ds.Sentence("a b", [0, 1], tokens=["a", "b"])],
                     [ds.Sentence("c", [2], tokens=["c"])]).main_metric == "f1_score"
    assert ds.Corpus("R", PR, [ds.Sentence(("a", "b"), 0.5)], [ds.Sentence(("c", "d"), 1.0)]).num_classes == 1


def test_sentence_and_dataset():
    pair = ds.Sentence(["a", "b"], 1)
    assert pair.text == ("a", "b") and pair.sentence_type == "sentence-pair" and pair.true_label == 1
    assert not pair.is_empty and ds.Sentence(("", " "), 0).is_empty
    with pytest.raises(ValueError, match="exactly 2 texts, got 3"):
        ds.Sentence(["a", "b", "c"], 0)
    with pytest.raises(ValueError, match="one tag per token"):
        ds.Sentence("a b", [0], tokens=["a", "b"])
    data = ds.SentenceDataset([ds.Sentence("x", 0), ds.Sentence("y", 1), ds.Sentence("z", 0)])
    assert len(data) == 3 and data[1].text == "y" and isinstance(data[1:], ds.SentenceDataset)
    assert data.texts == ["x", "y", "z"] and data.labels == [0, 1, 0]
    assert [s.text for s in data] == ["x", "y", "z"] and data.get_subset(0, 2) == data.sentences[:2]
    assert repr(data[0]) == "Sentence: x \nTrue label: 0 \nPredicted label: None"


def test_extract_tar_and_unsafe_archives(tmp_path):
    def tar_bytes(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    good = tmp_path / "data.tar.gz"
    good.write_bytes(tar_bytes({"corpus/train.txt": b"a\tb\n"}))
    extract(good, tmp_path, "http://x/data.tar.gz")
    assert (tmp_path / "corpus" / "train.txt").read_bytes() == b"a\tb\n" and not good.exists()

    evil = tmp_path / "evil.tgz"
    evil.write_bytes(tar_bytes({"../outside.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe members"):
        extract(evil, tmp_path / "dest", "http://x/evil.tgz")
    assert not (tmp_path / "outside.txt").exists()

    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as z:
        z.writestr("../../outside.txt", "x")
    with pytest.raises(DownloadError, match="outside its folder"):
        extract(evil_zip, tmp_path / "dest", "http://x/evil.zip")

    not_tar = tmp_path / "page.tar"
    not_tar.write_bytes(b"<html><body>moved</body></html>")
    with pytest.raises(DownloadError, match="expected a tar archive but got an HTML page"):
        extract(not_tar, tmp_path, "http://x/page.tar")
