"""Generate ``tests/fixtures/tiny_hub_word_ids.json.gz``: HF's ``input_ids`` and ``word_ids()`` for
the tagger's alignment sentences (``tests/_alignment.py``: the tricky words and, from
``../shared/data``, 300 WNUT-17 sentences) on the tiny hub checkpoints that ship only a SentencePiece
model. transformers reads those only with the ``sentencepiece`` package, which the test environment
lacks, so the tests compare with this file instead of running transformers live.

    .venv/bin/python tools/make_word_ids_fixture.py

Runs in the test environment (for the sentences, read as the tests read them) and calls the
PyTorch/sentencepiece environment (``$MULTIENC_TORCH_PYTHON``, else ``.venv-ref``) for
``transformers.AutoTokenizer.from_pretrained(folder)(words, is_split_into_words=True)``. The file
holds no text: per sentence a sha256 prefix of its words (the test checks that it reads the same
sentences), per repository the ids and word ids (-1 for special tokens).
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny_hub_word_ids.json.gz")
REPOS = ("multienc-test/xlm-roberta-spm-only", "multienc-test/albert-spm-only", "multienc-test/camembert-spm-only")

HF_SIDE = r"""
import json, sys
import transformers
folders, sentences = json.load(open(sys.argv[1]))
out = {"transformers": transformers.__version__, "repos": {}}
for repo, folder in folders.items():
    enc = transformers.AutoTokenizer.from_pretrained(folder)(sentences, is_split_into_words=True, truncation=False)
    out["repos"][repo] = {"input_ids": enc["input_ids"],
                          "word_ids": [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(sentences))]}
print(json.dumps(out))
"""


def main() -> None:
    from _alignment import alignment_sentences, sentence_digest
    from _tiny_hub import local
    sentences = alignment_sentences()
    python = os.environ.get("MULTIENC_TORCH_PYTHON") or os.path.join(ROOT, ".venv-ref", "bin", "python")
    if not os.path.exists(python):
        sys.exit("no PyTorch/sentencepiece environment: set MULTIENC_TORCH_PYTHON")
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as f:
        json.dump([{r: local(r) for r in REPOS}, sentences], f)
        f.flush()
        hf = json.loads(subprocess.run([python, "-c", HF_SIDE, f.name], check=True, capture_output=True,
                                       text=True).stdout.splitlines()[-1])
    hf["sentences"] = [sentence_digest(s) for s in sentences]
    with gzip.GzipFile(OUT, "wb", mtime=0) as g:  # mtime 0: the same content gives the same bytes
        g.write(json.dumps(hf, separators=(",", ":")).encode())
    print(f"wrote {OUT}: {len(sentences)} sentences x {', '.join(REPOS)} (transformers {hf['transformers']})")


if __name__ == "__main__":
    main()
