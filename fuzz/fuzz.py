#!/usr/bin/env python3
"""Mutation fuzzing of multienc's file parsers and C API (see docs/fuzzing.md).

    python fuzz/fuzz.py [TARGET ...] --seconds S [--report FILE]     # all targets when none is named

Per target: the regression inputs (``fuzz/regressions/<target>/``, each once a crasher) and the
seeds are replayed, then mutants of the seeds (and of mutants that stayed valid) run until ``S``
seconds have passed. Inputs run in a worker process, which is restarted after a crash; each input
must end in success or in one of the target's documented exception types. Findings: a crash
(signal, sanitizer report), a hang (no answer in --timeout seconds), an escaped exception (another
type), and memory: any allocation of more than 2 GiB fails (RLIMIT_AS 2 GiB above the worker's
start-up size, or ASan's max_allocation_size_mb under the sanitizer build) and shows up as a
MemoryError or a crash. Findings are saved to ``fuzz/findings/<target>/`` with the traceback; the
exit status is 1 when there is any.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CAP_BYTES = 2 << 30
# Findings already filed and fixed on another branch, by a line of their report: counted and
# listed as "known", without failing the run. Remove an entry once its fix is merged.
KNOWN: Dict[str, str] = {}
RESTART_EVERY = 400  # inputs per worker before a fresh one (bounds slow leaks and cache growth)


# ------------------------------------------------------------------ worker side

def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(name: str) -> None:
    """Read length-prefixed inputs on stdin, answer one JSON line per input on stdout."""
    sys.path.insert(0, HERE)
    import targets  # noqa: E402 (the worker's own imports happen here, after the path)
    import multienc.engine  # noqa: F401 (load the extension before measuring the address space)
    import multienc.models  # noqa: F401
    target = targets.TARGETS[name]
    allowed = target.allowed()
    if os.environ.get("MULTIENC_SANITIZED") != "1":
        import resource
        limit = _address_space() + CAP_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    scratch = tempfile.mkdtemp(prefix=f"multienc-fuzz-{name}-")
    out = sys.stdout
    while True:
        head = sys.stdin.buffer.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack("<I", head)
        data = sys.stdin.buffer.read(n)
        targets.clean(scratch)
        try:
            target.run(data, scratch)
            answer = {"outcome": "ok"}
        except MemoryError as e:
            answer = {"outcome": "memory", "type": "MemoryError", "message": str(e)[:500],
                      "traceback": traceback.format_exc()[-4000:]}
        except allowed as e:
            answer = {"outcome": "rejected", "type": type(e).__name__}
        except BaseException as e:  # noqa: BLE001 - anything else escaping is exactly what the fuzzer looks for
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            answer = {"outcome": "escaped", "type": type(e).__name__, "message": str(e)[:500],
                      "traceback": traceback.format_exc()[-4000:]}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# ------------------------------------------------------------------ parent side

class Worker:
    def __init__(self, name: str):
        self.name = name
        self.proc: Optional[subprocess.Popen] = None
        self.served = 0

    def start(self) -> None:
        env = dict(os.environ)
        if env.get("MULTIENC_SANITIZED") == "1":
            env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""), "max_allocation_size_mb=2048",
                                                         "allocator_may_return_null=1"]))
        # stderr to a file, not a pipe: nobody reads a pipe while the worker runs, and a target that
        # warns on many inputs (the corpus readers' skipped rows) filled its 64 KiB and blocked the
        # worker mid-write, which read as a hang
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", self.name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.served = 0

    def stop(self) -> str:
        """Kill the worker; returns the tail of its stderr."""
        if self.proc is None:
            return ""
        self.proc.kill()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        size = self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, size - 6000))
        err = self.stderr.read()
        self.stderr.close()
        return err.decode("utf-8", "replace")[-6000:]

    def run(self, data: bytes, timeout: float) -> Dict[str, str]:
        if self.proc is None or self.served >= RESTART_EVERY:
            self.stop()
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.served += 1
        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            err = self.stop()
            return {"outcome": "hang", "type": f"no answer in {timeout:.0f} s", "traceback": err}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=60)
            err = self.stop()
            kind = "memory" if "allocation-size-too-big" in err or "requested allocation size" in err else "crash"
            return {"outcome": kind, "type": f"worker died (status {code})", "traceback": err}
        return json.loads(line)


def _load(patterns: List[str]) -> List[Tuple[str, bytes]]:
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            if os.path.isfile(path) and not path.endswith((".md", ".txt.note")):
                with open(path, "rb") as f:
                    out.append((os.path.relpath(path, ROOT), f.read()))
    return out


def fuzz_target(name: str, seconds: float, timeout: float, rnd: random.Random) -> Dict[str, object]:
    import targets  # on sys.path: main() put this folder there
    target = targets.TARGETS[name]
    seeds = _load(target.seeds)
    regressions = _load([f"fuzz/regressions/{name}/*"])
    if not seeds:
        raise SystemExit(f"fuzz: no seeds for {name} (run fuzz/make_inputs.py)")
    stats: Dict[str, object] = {"target": name, "seeds": len(seeds), "regressions": len(regressions), "inputs": 0,
                                "ok": 0, "rejected": {}, "findings": [], "largest_input": 0}
    worker = Worker(name)
    pool: List[bytes] = [d for _, d in seeds]
    findings_dir = os.path.join(HERE, "findings", name)

    def record(data: bytes, answer: Dict[str, str], origin: str) -> None:
        stats["inputs"] += 1
        stats["largest_input"] = max(stats["largest_input"], len(data))
        outcome = answer["outcome"]
        known = [why for sign, why in KNOWN.items() if sign in answer.get("traceback", "")]
        if known and outcome in ("crash", "escaped", "memory"):
            stats.setdefault("known", {})
            stats["known"][known[0]] = stats["known"].get(known[0], 0) + 1
            return
        if outcome == "ok":
            stats["ok"] += 1
        elif outcome == "rejected":
            stats["rejected"][answer["type"]] = stats["rejected"].get(answer["type"], 0) + 1
        else:
            digest = hashlib.sha1(data).hexdigest()[:16]
            os.makedirs(findings_dir, exist_ok=True)
            stem = os.path.join(findings_dir, f"{outcome}-{digest}")
            with open(stem + ".bin", "wb") as f:
                f.write(data)
            with open(stem + ".log", "w", encoding="utf-8") as f:
                f.write(f"{origin}\n{answer.get('type')}: {answer.get('message', '')}\n{answer.get('traceback', '')}")
            stats["findings"].append({"kind": outcome, "type": answer.get("type"), "input": stem + ".bin",
                                      "from": origin, "message": answer.get("message", "")[:200]})

    started = time.monotonic()
    for origin, data in regressions + seeds:
        record(data, worker.run(data, timeout), origin)
    deadline = time.monotonic() + seconds  # mutation time, after the replay
    while time.monotonic() < deadline:
        parent = rnd.choice(pool)
        try:
            data = target.mutate(rnd, parent, pool)
        except RecursionError:  # a mutant nested too deeply for the mutator itself: draw another
            continue
        if len(data) > 1 << 20:  # the acceptance criterion is about files under 1 MB
            continue
        answer = worker.run(data, timeout)
        record(data, answer, "mutant")
        if answer["outcome"] == "ok" and data not in pool and len(pool) < 256:
            pool.append(data)
    worker.stop()
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


def main(argv: Optional[List[str]] = None) -> int:
    sys.path.insert(0, HERE)
    import targets
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets (default: all): {', '.join(targets.TARGETS)}")
    parser.add_argument("--seconds", type=float, default=60, help="mutation time per target")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one input may take (a hang)")
    parser.add_argument("--seed", type=int, default=None, help="mutation RNG seed (default: random, printed)")
    parser.add_argument("--report", help="append each target's statistics as a JSON line to this file")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (each in its own worker process)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    names = args.targets or list(targets.TARGETS)
    unknown = [n for n in names if n not in targets.TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(targets.TARGETS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    timeout = args.timeout or (120.0 if os.environ.get("MULTIENC_SANITIZED") == "1" else 30.0)
    print(f"fuzz: seed {seed}, {args.seconds:g} s per target, {', '.join(names)}", flush=True)
    failed = False
    # the mutation loops wait on their worker processes most of the time, so threads run them side by side
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        runs = pool.map(lambda name: fuzz_target(name, args.seconds, timeout, random.Random(f"{seed}-{name}")),
                        names)
        for stats in runs:  # reported in the order named, each as soon as it and those before it are done
            failed |= report(stats, seed, args.report)
    return 1 if failed else 0


def report(stats: Dict[str, object], seed: int, path: Optional[str]) -> bool:
    """Prints one target's statistics (and appends them as a JSON line to ``path``); True when it
    found anything."""
    stats["seed"] = seed
    rejected = sum(stats["rejected"].values())
    print(f"{stats['target']}: {stats['inputs']} inputs in {stats['seconds']} s: {stats['ok']} accepted, "
          f"{rejected} refused ({', '.join(f'{k} {v}' for k, v in sorted(stats['rejected'].items()))}); "
          f"{len(stats['findings'])} findings", flush=True)
    for why, count in stats.get("known", {}).items():
        print(f"  known ({count} inputs): {why}", flush=True)
    for finding in stats["findings"][:10]:
        print(f"  {finding['kind']}: {finding['type']}: {finding['message']} ({finding['input']}, "
              f"from {finding['from']})", flush=True)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(stats) + "\n")
    return bool(stats["findings"])


if __name__ == "__main__":
    sys.exit(main())
