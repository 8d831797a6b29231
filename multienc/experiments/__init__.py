"""Experiments made of many training runs: the combination search
(:func:`~multienc.experiments.search.combination_search`: every combination of some language
models for every seed, each an ordinary ModelTrainer run, spread over local processes or MPI rank
groups, resumable, summarised as tables and a plot). See docs/distributed.md.

Uses :mod:`multienc.training`, :mod:`multienc.models`, :mod:`multienc.parallel` and :mod:`multienc.plot`.
"""
from multienc.experiments.search import PLAN_FILE, RESULT_FILE, SearchRun, build_model, combination_search

__all__ = ["combination_search", "build_model", "SearchRun", "PLAN_FILE", "RESULT_FILE"]
