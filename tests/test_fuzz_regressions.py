"""The fuzz harnesses replay their regression inputs (every crasher of issue 17) and seeds with no
finding, and their mutation loop runs: ``fuzz/fuzz.py --seconds 1`` for every target (the long
runs are ``make fuzz``; docs/fuzzing.md)."""
import json
import os
import subprocess
import sys

import pytest

import multienc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The harness's workers import the multienc this test imported (the source tree, or the sanitizer build).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))


@pytest.mark.slow  # make sanitize replays the same inputs under the sanitizers (fuzz/fuzz.py after its tests)
def test_every_target_replays_its_regressions_without_a_finding(tmp_path):
    report = tmp_path / "report.jsonl"
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "fuzz", "fuzz.py"), "--seconds", "1", "--seed", "1",
                           "--report", str(report)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    stats = {s["target"]: s for s in map(json.loads, report.read_text().splitlines())}
    assert set(stats) == {"safetensors", "torch_zip", "tokenizer_json", "tokenizer_files", "config", "checkpoint",
                          "corpus", "c_api", "spm_model"}
    for name, s in stats.items():
        assert not s["findings"], (name, s["findings"])
        assert s["inputs"] > s["seeds"] + s["regressions"], f"{name}: the mutation loop ran no input"
    # every regression input is refused by its format's error (none is accepted as valid)
    assert stats["torch_zip"]["regressions"] == 11 and stats["checkpoint"]["regressions"] == 5
    assert stats["tokenizer_json"]["regressions"] == 12


def test_a_worker_that_writes_much_to_stderr_keeps_answering(monkeypatch):
    """The corpus readers warn about the rows they skip, in words that change with every input. 400
    such inputs write far more than a pipe's 64 KiB to the worker's stderr; the harness must not
    block the worker on it (it once did: a false "hang" finding in CI's fuzz run), and the tail of
    that stderr still comes back when the worker stops."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "fuzz"))
    monkeypatch.setenv("PYTHONPATH", PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import fuzz
    worker = fuzz.Worker("corpus")
    try:
        for i in range(400):
            rows = ["s1\ts2\tlabel"] + [f"x{k}\ty\tgood" if k % (i % 7 + 2) else f"short\t{k}" for k in range(5 + i)]
            answer = worker.run(("\n".join(rows) + "\n").encode(), 60)
            assert answer["outcome"] in ("ok", "rejected"), (i, answer)
    finally:
        tail = worker.stop()
    assert "skipped" in tail and len(tail) == 6000
