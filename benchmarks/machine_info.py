"""The CPU's name as the benchmarks print it, shared by every script that reports its machine.

"AMD EPYC" alone names two generations whose speeds differ by half (Zen 4, x86 family 25, and
Zen 5, family 26), so the x86 family and model numbers follow the name where /proc/cpuinfo has them.
"""
from __future__ import annotations

import platform
from typing import Optional


def proc_field(path: str, key: str) -> Optional[str]:
    """The value of the first "key : value" line of a /proc file whose key is exactly key (None
    where the file or the key is missing)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """e.g. "AMD EPYC (x86 family 25 model 17)"; the platform's processor or machine name elsewhere."""
    name = proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    family, model = proc_field("/proc/cpuinfo", "cpu family"), proc_field("/proc/cpuinfo", "model")
    if family and model:
        name += f" (x86 family {family} model {model})"
    return name
