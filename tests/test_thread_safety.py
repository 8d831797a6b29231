"""The thread-safety contract of the C bindings (docs/ARCHITECTURE.md, "Threads") under load: 4
threads share two LMs and three heads built on them (in both LM orders) and mix encoder forward +
backward, predictions, head forward + backward, training steps and buffer reads for a bounded time
(30 s under the sanitizer build, `make sanitize`; 3 s otherwise). Nothing may crash, hang, report or
return a wrong result: concurrent eval-mode predictions equal single-threaded ones bit for bit, and
the only errors are the documented ones (a backward whose forward another thread replaced)."""
import json
import os

import pytest

import _c_engine as ce

SANITIZED = os.environ.get("MULTIENC_SANITIZED") == "1"
SECONDS = 30 if SANITIZED else 3


def test_four_threads_mixing_every_call_on_shared_lms():
    try:
        proc = ce.run_script("stress", SECONDS, timeout=SECONDS + (600 if SANITIZED else 120))
    except Exception as e:  # subprocess.TimeoutExpired: some threads never finished
        pytest.fail(f"the stress run did not finish (deadlock?): {e}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["mismatches"] == []
    assert result["unexpected"] == []
    assert set(result["counts"]) == {"encoder", "predict", "head_backward", "train_step", "buffers"}, result
    assert sum(result["counts"].values()) >= 20, result
