"""Scores of predictions, a layer of its own because both the corpora (which metrics a task
type allows) and the trainer (dev and test scores) use it:
:mod:`~multienc.evaluation.metrics` (accuracy, F1, MCC, Pearson/Spearman, seqeval's entity
scores, reports), equal to scikit-learn, scipy and seqeval. Imports nothing else of multienc.
"""
