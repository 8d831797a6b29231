"""Small corpus files in each source's ORIGINAL layout (names, archive structure,
headers, delimiters, encodings, line endings), written from scratch for the tests.

``serve(name, mirror)`` puts the files of corpus class ``name`` on a
:class:`MirrorServer` under their original URLs. The texts are invented; the
tests in test_datasets.py assert on the specific rows written here.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from multienc.datasets import corpora as c

from _data_server import MirrorServer

GLUE = "https://dl.fbaipublicfiles.com/glue/data/"


def tsv(rows: List[List[str]], eol: str = "\n", final_newline: bool = True) -> str:
    text = eol.join("\t".join(r) for r in rows)
    return text + eol if final_newline else text


# --------------------------------------------------------------------------- classification

def clickbait(m: MirrorServer) -> None:
    # one headline per line, blank line after each (as in the real gzip files)
    bait = [f"You Won't Believe What Happened Number {i}" for i in range(2003)]
    bait[1] = '"Star Wars" Trailer Is Here To Give You Chills'
    bait[2002] = bait[0]  # a duplicate of a dev headline: dropped from train
    news = [f"Senate passes budget bill {i}" for i in range(2002)]
    m.put_gzip(c.CLICKBAIT.URLS[0], "".join(h + "\n\n" for h in bait))
    m.put_gzip(c.CLICKBAIT.URLS[1], "".join(h + "\n\n" for h in news))


ISEAR_LABELS = ["joy", "anger", "fear", "disgust", "shame", "guilt", "sadness"]


def isear(m: MirrorServer) -> None:
    lines = ["Emotion,Text"]
    for i in range(182):
        for label in ISEAR_LABELS:
            lines.append(f"{label},When event {i} made me feel {label}.")
    lines[1] = 'joy,"During the period of falling in love, each time that we met."'
    lines.append('guilt,"I said ""no"" to a friend, twice."')
    m.put(c.ISEAR.URLS[0], "\r\n".join(lines) + "\r\n")


def trec(m: MirrorServer) -> None:
    train = ("DESC:manner How did serfdom develop in and then leave Russia ?\n"
             "ENTY:cremat What films featured the character Popeye Doyle ?\n"
             "ABBR:exp What is the full form of .com ?\n"
             "HUM:ind Who was the sister\xf0city mayor ?\n"
             "LOC:city What city had a world fair in 1900 ?\n"
             "NUM:date When was Ozzy Osbourne born ?\n")
    dev = ("NUM:dist How far is it from Denver to Aspen ?\n"
           "LOC:city What county is Modesto , California in ?\n"
           "HUM:desc Who was Galileo ?\n")
    m.put(c.TREC.URLS[0], train.encode("iso-8859-1"))
    m.put(c.TREC.URLS[1], dev.encode("iso-8859-1"))


EMOTIONS = ["happy", "sad", "surprise", "disgust", "anger", "fear", "shame"]


def emotion_stimulus(m: MirrorServer) -> None:
    lines = [f"<{e}>Sentence {i} about feeling {e} today . <\\{e}>" for i in range(31) for e in EMOTIONS]
    lines[0] = "<happy>I suppose I am happy being so ` tiny' ; it is fine . <\\happy>"
    m.put_zip(c.EMOTION_STIMULUS.URLS[0], {
        "Dataset/No Cause.txt": "\n".join(lines) + "\n",
        "Dataset/Emotion Cause.txt": "<happy>He was happy <cause>to win<\\cause> . <\\happy>\n",
        "Dataset/Readme.txt": "Emotion-Stimulus data set\n",
    })


# --------------------------------------------------------------------------- GLUE

def glue_cola(m: MirrorServer) -> None:
    train = tsv([["gj04", "1", "", "Our friends won't buy this analysis, let alone the next one we propose."],
                 ["gj04", "0", "*", "They drank the pub."],
                 ["bc01", "1", "", 'He said "hello" to them.']])
    dev = tsv([["gj04", "1", "", "The sailors rode the breeze clear of the rocks."],
               ["gj04", "0", "*", "The more we study verbs, the crazier."]], final_newline=False)
    m.put_zip(GLUE + "CoLA.zip", {"CoLA/train.tsv": train, "CoLA/dev.tsv": dev,
                                  "CoLA/test.tsv": tsv([["index", "sentence"], ["0", "Bill whistled past the house."]])})


def glue_sst2(m: MirrorServer) -> None:
    train = tsv([["sentence", "label"], ["hide new secretions from the parental units ", "0"],
                 ["that loves its characters ", "1"], ["remains utterly satisfied ", "0"]])
    dev = tsv([["sentence", "label"], ["it 's a charming and often affecting journey . ", "1"]])
    m.put_zip(GLUE + "SST-2.zip", {"SST-2/train.tsv": train, "SST-2/dev.tsv": dev,
                                   "SST-2/test.tsv": tsv([["index", "sentence"], ["0", "uneasy mishmash"]])})


MRPC_HEADER = ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


def glue_mrpc(m: MirrorServer) -> None:
    train = tsv([MRPC_HEADER,
                 ["1", "702876", "702977", 'Amrozi accused his brother , whom he called " the witness " .',
                  'Referring to him as only " the witness " , Amrozi accused his brother .'],
                 ["0", "2108705", "2108831", "Yucaipa owned Dominick 's before selling the chain .",
                  "Yucaipa bought Dominick 's in 1995 ."]])
    dev = tsv([MRPC_HEADER, ["1", "1355540", "1355592", "He said the pie business doesn 't fit .",
                             '" The pie business does not fit our strategy .']])
    m.put(c.GLUE_MRPC.URLS[0], train)
    m.put(c.GLUE_MRPC.URLS[1], dev)


def glue_rte(m: MirrorServer) -> None:
    head = ["index", "sentence1", "sentence2", "label"]
    train = tsv([head, ["0", "No Weapons of Mass Destruction Found in Iraq Yet.",
                        "Weapons of Mass Destruction Found in Iraq.", "not_entailment"],
                 ["1", "A place of sorrow became a place of celebration.", "Pope Benedict XVI is the new leader.",
                  "entailment"]])
    dev = tsv([head, ["0", "Dana Reeve died of lung cancer.", "Christopher Reeve had an accident.",
                      "not_entailment"]])
    m.put_zip(GLUE + "RTE.zip", {"RTE/train.tsv": train, "RTE/dev.tsv": dev})


MNLI_TRAIN_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD[:11] + ["label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(i: str, s1: str, s2: str, labels: List[str]) -> List[str]:
    return [i, "31193", f"{i}n", "government", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})",
            s1, s2] + labels


def glue_mnli(m: MirrorServer) -> None:
    train = tsv([MNLI_TRAIN_HEAD,
                 _mnli_row("0", "Conceptually cream skimming has two basic dimensions.",
                           "Product and geography are what make cream skimming work. ", ["neutral", "neutral"]),
                 _mnli_row("1", 'He said "yes" quietly.', "He spoke.", ["entailment", "entailment"]),
                 ["2", "31193", "2n", "fiction", "( a )"],  # a row with missing fields
                 _mnli_row("3", "The cat sat.", "No cat sat.", ["contradiction", "contradiction"])])
    matched = tsv([MNLI_DEV_HEAD,
                   _mnli_row("0", "The new rights are nice enough", "Everyone really likes the newest benefits",
                             ["entailment", "neutral", "neutral", "neutral", "neutral", "neutral"]),
                   _mnli_row("1", "This site includes a list of all award winners.",
                             "The Government Executive articles are not on the site.",
                             ["contradiction", "contradiction", "contradiction", "contradiction", "contradiction",
                              "contradiction"])])
    mismatched = tsv([MNLI_DEV_HEAD,
                      _mnli_row("0", "Your contribution helped make it possible.",
                                "Your contributions were of no help.",
                                ["contradiction", "contradiction", "contradiction", "contradiction",
                                 "contradiction", "contradiction"])])
    m.put_zip(GLUE + "MNLI.zip", {"MNLI/train.tsv": train, "MNLI/dev_matched.tsv": matched,
                                  "MNLI/dev_mismatched.tsv": mismatched})


def glue_qnli(m: MirrorServer) -> None:
    head = ["index", "question", "sentence", "label"]
    train = tsv([head, ["0", "When did the third Digimon series begin?",
                        "Unlike the two seasons before it, it focused on a more mature story.", "not_entailment"],
                 ["1", "Which missile batteries often have individual launchers?",
                  "When MANPADS is operated by specialists, batteries may have several launchers.", "entailment"]])
    dev = tsv([head, ["0", "What came into force after the new constitution was herald?",
                      "As of that day, the new constitution heralding the Second Republic came into force.",
                      "entailment"]])
    m.put_zip(GLUE + "QNLIv2.zip", {"QNLI/train.tsv": train, "QNLI/dev.tsv": dev})


def glue_qqp(m: MirrorServer) -> None:
    head = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    train = tsv([head, ["133273", "213221", "213222", "How is the life of a math student?",
                        "Which level of prepration is enough for the exam jlpt5?", "0"],
                 ["402555", "536040", "536041", "How do I control my horny emotions?"],  # missing fields
                 ["360472", "364011", "490273", "What causes stool color to change to yellow?",
                  "What can cause stool to come out as little balls?", "1"]])
    dev = tsv([head, ["201359", "303345", "303346", "Why are African-Americans so beautiful?",
                      "Why are hispanics so beautiful?", "0"]])
    m.put_zip(GLUE + "QQP-clean.zip", {"QQP/train.tsv": train, "QQP/dev.tsv": dev})


def glue_wnli(m: MirrorServer) -> None:
    head = ["index", "sentence1", "sentence2", "label"]
    train = tsv([head, ["0", "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
                        "The carrot had a hole.", "1"],
                 ["3", "Steve follows Fred's example in everything. He influences him hugely.",
                  "Steve influences him hugely.", "0"]])
    dev = tsv([head, ["0", "The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.",
                      "0"]])
    m.put_zip(GLUE + "WNLI.zip", {"WNLI/train.tsv": train, "WNLI/dev.tsv": dev})


STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
             "score"]


def glue_stsb(m: MirrorServer) -> None:
    train = tsv([STSB_HEAD,
                 ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane is taking off.",
                  "An air plane is taking off.", "5.000"],
                 ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
                  "A man is playing a large flute.", "A man is playing a flute.", "3.800"]])
    dev = tsv([STSB_HEAD, ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none",
                           "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", "5.000"]])
    m.put_zip(GLUE + "STS-B.zip", {"STS-B/train.tsv": train, "STS-B/dev.tsv": dev})


# --------------------------------------------------------------------------- SICK, regression

SICK_HEAD = ["pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score", "entailment_AB",
             "entailment_BA", "sentence_A_original", "sentence_B_original", "sentence_A_dataset",
             "sentence_B_dataset", "SemEval_set"]


def sick(m: MirrorServer) -> None:
    rows = [SICK_HEAD]
    pid = 1
    for i in range(322):
        for label in ("NEUTRAL", "ENTAILMENT", "CONTRADICTION"):
            a, b = f"A group of {i} kids is playing", f"Some kids {label.lower()} {i}"
            rows.append([str(pid), a, b, label, "4.5", "A_neutral_B", "B_neutral_A", a, b, "FLICKR", "FLICKR",
                         "TRAIN"])
            pid += 1
    m.put_zip(c.SICK.URLS[0], {"SICK.txt": tsv(rows, eol="\r\n", final_newline=False),
                               "readme.txt": "SICK data set\n"})


def emobank(m: MirrorServer) -> None:
    m.put(c.EMOBANK.URLS[0], "\n".join([
        "id,split,V,A,D,text",
        '110CYL068_1036_1079,train,3.0,3.0,3.2,"Remember what she said in my last letter? """',
        "110CYL068_1079_1110,test,2.8,3.1,2.8,If I wasn't working here.",
        "110CYL068_1137_1188,train,3.44,3.0,3.22,Goodwill helps people get off of public assistance.",
        '110CYL068_1189_1236,dev,3.55,3.27,3.46,"Sherry, you are always welcome."',
        "110CYL068_1237_1286,train,3.0,3.1,2.9,The end.",
    ]) + "\n")


def fb_valence_arousal(m: MirrorServer) -> None:
    lines = ["Anonymized Message,Valence1,Valence2,Arousal1,Arousal2",
             "We'll be off and running to a lil' place called SILVERWOOD today! Can't wait! :),9,9,8,8",
             '"thinks that for girls, boys are easily found.",4,3,6,7',
             ",5,5,1,1"]  # an empty message: dropped
    lines += [f"post number {i},{1 + i % 9},5,{1 + (i * 7) % 9},5" for i in range(801)]
    m.put(c.FB_VALENCE_AROUSAL.URLS[0], "\r\n".join(lines))


# --------------------------------------------------------------------------- sequence labeling

def conll_files() -> Dict[str, str]:
    """train/valid/test in the deepai conll2003.zip layout (IOB2, 4 space-separated columns)."""
    train = ("-DOCSTART- -X- -X- O\n\n"
             "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n. . O O\n\n"
             "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
             "-DOCSTART- -X- -X- O\n\n"
             "BRUSSELS NNP B-NP B-LOC\n1996-08-22 CD I-NP O\n\n")
    valid = "-DOCSTART- -X- -X- O\n\nCRICKET NNP B-NP O\n- : O O\nLEICESTERSHIRE NNP B-NP B-ORG\n\n"
    test = ("-DOCSTART- -X- -X- O\n\nSOCCER NN B-NP O\n\n"
            "Nadim NNP B-NP B-PER\nLadki NNP I-NP I-PER")  # no blank line after the last sentence
    return {"train.txt": train, "valid.txt": valid, "test.txt": test}


def conll_ner(m: MirrorServer) -> None:
    m.put_zip(c.CONLL_NER.URLS[0], {**conll_files(), "metadata": "CoNLL-2003 shared task data\n"})


def wnut_ner(m: MirrorServer) -> None:
    train = ("@paulwalk\tO\nIt\tO\n's\tO\nthe\tO\nview\tO\nfrom\tO\nthe\tO\nEmpire\tB-location\n"
             "State\tI-location\nBuilding\tI-location\n\t\n"
             "Channel\tI-corporation\n!\tO\n\n"
             "Go\tO\nNew\tB-group\nYork\tI-group\nGiants\tI-group\n")
    dev = "Stack\tB-product\nOverflow\tI-product\nrocks\tO\n\nhello\tO\n\n"
    test = "Localizing\tO\nYakuza\tB-creative-work\n0\tI-creative-work\n\nTrump\tB-person\nsays\tO\n\n"
    for url, text in zip(c.WNUT_NER.URLS, (train, dev, test)):
        m.put(url, text)


def mit_movie_ner(m: MirrorServer) -> None:
    train = ("B-Actor\tsteve\r\nI-Actor\tmcqueen\r\nO\tprovided\r\nO\ta\r\nB-Plot\tthrilling\r\n\r\n"
             "B-Year\t1990\r\nO\tmovie\r\nO\twith\r\nB-Soundtrack\tyesterday\r\n\r\n")
    test = "B-Director\tspielberg\r\nB-Genre\twestern\r\n\r\n"
    m.put(c.MIT_MOVIE_NER.URLS[0], train)
    m.put(c.MIT_MOVIE_NER.URLS[1], test)


def mit_restaurant_ner(m: MirrorServer) -> None:
    train = ("B-Rating\t2\nI-Rating\tstart\nO\trestaurants\nB-Amenity\twith\nI-Amenity\tinside\n"
             "I-Amenity\tdining\n\nO\t34\n\nB-Restaurant_Name\tdennys\nB-Hours\topen\nI-Hours\tlate\n\n")
    test = "O\ta\nB-Price\tcheap\nB-Cuisine\tthai\nB-Dish\tcurry\nB-Location\tnearby\n\n"
    m.put(c.MIT_RESTAURANT_NER.URLS[0], train)
    m.put(c.MIT_RESTAURANT_NER.URLS[1], test)


SERVE: Dict[str, Callable[[MirrorServer], None]] = {
    "CLICKBAIT": clickbait, "ISEAR": isear, "TREC": trec, "EMOTION_STIMULUS": emotion_stimulus,
    "GLUE_COLA": glue_cola, "GLUE_SST2": glue_sst2, "GLUE_MRPC": glue_mrpc, "GLUE_RTE": glue_rte,
    "GLUE_MNLI": glue_mnli, "GLUE_QNLI": glue_qnli, "GLUE_QQP": glue_qqp, "GLUE_WNLI": glue_wnli,
    "SICK": sick, "GLUE_STSB": glue_stsb, "EMOBANK": emobank, "FB_VALENCE_AROUSAL": fb_valence_arousal,
    "CONLL_NER": conll_ner, "WNUT_NER": wnut_ner, "MIT_MOVIE_NER": mit_movie_ner,
    "MIT_RESTAURANT_NER": mit_restaurant_ner,
}


def serve(name: str, mirror: MirrorServer) -> None:
    """Put the fixture files of corpus class ``name`` on ``mirror``."""
    SERVE[name](mirror)
