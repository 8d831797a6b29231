"""The real files under ``../shared/data`` (beside the repository; ``$MULTIENC_SHARED_DATA``
overrides the place), read in place by the tests.

Policy: a test that needs them skips only when the whole folder is absent (a clone
without ``../shared``); a file missing from a present folder is a failure, because
``SOURCES.md`` there lists what it holds. Files that ``SOURCES.md`` itself says are
not staged (``staged=False``) skip with that reason until they are added.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MULTIENC_SHARED_DATA", REPO.parent / "shared" / "data"))


def present() -> bool:
    """Whether the shared data folder is here at all."""
    return SHARED_DATA.is_dir()


def require(*names: str, staged: bool = True) -> List[Path]:
    """Paths of ``names`` under the shared data folder, by the policy above."""
    if not present():
        pytest.skip(f"{SHARED_DATA} is absent (a clone without ../shared)")
    paths = [SHARED_DATA / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing and not staged:
        pytest.skip(f"not staged in {SHARED_DATA} (its SOURCES.md lists them as not here): {', '.join(missing)}")
    if missing:
        pytest.fail(f"missing from {SHARED_DATA} although it is present: {', '.join(missing)}")
    return paths
