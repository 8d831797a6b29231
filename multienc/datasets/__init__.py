"""Corpora: pick one by name, it downloads once, parses exactly and splits as documented.

>>> from multienc.datasets import GLUE_COLA
>>> corpus = GLUE_COLA()          # downloads into $MULTIENC_CACHE/datasets/glue_cola once
>>> print(corpus)                 # name, task, split sizes, metrics, label frequency, label map
>>> corpus.train[0].text, corpus.train[0].label

Set ``MULTIENC_DATASETS_MIRROR`` to fetch every ``https://HOST/PATH`` from
``$MULTIENC_DATASETS_MIRROR/HOST/PATH`` instead. Your own data: :class:`CSVCorpus`.
"""
from multienc.datasets.corpora import (CLICKBAIT, CONLL_NER, EMOBANK, EMOTION_STIMULUS, FB_VALENCE_AROUSAL, GLUE_COLA,
                                       GLUE_MNLI, GLUE_MRPC, GLUE_QNLI, GLUE_QQP, GLUE_RTE, GLUE_SST2, GLUE_STSB,
                                       GLUE_WNLI, ISEAR, MIT_MOVIE_NER, MIT_RESTAURANT_NER, SHUFFLE_SEED, SICK, TREC,
                                       WNUT_NER, bio_label_map)
from multienc.datasets.corpus import TASK_TYPES, Corpus, CSVCorpus, default_metrics
from multienc.datasets.download import cache_root, fetch_corpus, resolve_url
from multienc.datasets.readers import CorpusFormatError, read_column_file, read_sentences
from multienc.datasets.sentence import Sentence, SentenceDataset

#: The 20 corpora of the seed, by class name.
CORPORA = {c.__name__: c for c in (
    CLICKBAIT, ISEAR, TREC, EMOTION_STIMULUS, GLUE_COLA, GLUE_SST2, GLUE_MRPC, GLUE_RTE, GLUE_MNLI, GLUE_QNLI,
    GLUE_QQP, GLUE_WNLI, SICK, GLUE_STSB, EMOBANK, FB_VALENCE_AROUSAL, CONLL_NER, WNUT_NER, MIT_MOVIE_NER,
    MIT_RESTAURANT_NER)}

__all__ = ["Sentence", "SentenceDataset", "Corpus", "CSVCorpus", "CorpusFormatError", "TASK_TYPES", "CORPORA",
           "SHUFFLE_SEED", "bio_label_map", "cache_root", "default_metrics", "fetch_corpus", "resolve_url",
           "read_column_file", "read_sentences", *CORPORA]
