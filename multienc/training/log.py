"""The training log: ``training.log`` in the run's folder (and stdout when the user configured
no logging, as Flair prints), and the one separator line its sections are set apart by."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("multienc.trainer")

#: the separator line between sections of the log (the research code's width)
SEPARATOR = "-" * 52


def log_line() -> None:
    """Write the separator line."""
    log.info(SEPARATOR)


def flush_log() -> None:
    """Flush the log's handlers (so ``training.log``'s size says what a checkpoint has seen)."""
    for handler in log.handlers:
        handler.flush()


@contextmanager
def training_log(base_path: str, append: bool = False) -> Iterator[logging.Logger]:
    """Log to ``base_path/training.log`` (overwritten, or continued with ``append``) for the duration
    of a run; when nobody has configured logging, also to stdout (otherwise the user's handlers
    receive the records)."""
    handler = logging.FileHandler(os.path.join(base_path, "training.log"), mode="a" if append else "w",
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    console = None
    if not log.handlers and not logging.getLogger().handlers:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(handler.formatter)
        log.addHandler(console)
        log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()
        if console is not None:
            log.removeHandler(console)
            log.propagate = True
