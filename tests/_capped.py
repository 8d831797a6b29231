"""Run a reproducer in a child process whose allocations are capped, so that a regression of a
"huge allocation from a tiny file" defect fails with MemoryError (or a crash of the child) instead
of exhausting the machine or taking pytest down with it.

Plain runs cap the child's address space at what a fresh interpreter with multienc imported uses
plus 2 GiB (RLIMIT_AS). Under the sanitizer build (``MULTIENC_SANITIZED=1``: ASan reserves terabytes
of shadow address space, so RLIMIT_AS cannot be used) ASan refuses any single allocation above 2 GiB
and returns NULL for it (``max_allocation_size_mb``, ``allocator_may_return_null``).
"""
import os
import subprocess
import sys
import textwrap

CAP_BYTES = 2 << 30
_PRELUDE = "import multienc, multienc.engine, multienc.models, numpy\n"


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def run_capped(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` (after importing multienc) in a capped child; returns the finished process
    (``returncode`` negative for a signal; output in ``stdout`` / ``stderr``)."""
    env = dict(os.environ)
    if env.get("MULTIENC_SANITIZED") == "1":
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""), "max_allocation_size_mb=2048",
                                                     "allocator_may_return_null=1"]))
        cap = ""
    else:  # the child measures its own address space after the imports, then caps itself
        cap = ("import resource, sys\nsys.path.insert(0, %r)\nimport _capped\n"
               "limit = _capped._address_space() + _capped.CAP_BYTES\n"
               "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n" % os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", _PRELUDE + cap + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def capped_error(setup: str, call: str, timeout: float = 120) -> str:
    """``"<ExceptionType> <message>"`` of ``call`` (one expression, after the ``setup`` statement) run
    in a capped child; fails the test when the child crashes or the call raises nothing."""
    child = run_capped(f"{setup}\ntry:\n    {call}\nexcept Exception as e:\n    print(type(e).__name__, e)\n",
                       timeout=timeout)
    assert child.returncode == 0, f"the child died ({child.returncode}): {child.stderr[-2000:]}"
    assert child.stdout.strip(), f"{call} raised nothing"
    return child.stdout.strip()
