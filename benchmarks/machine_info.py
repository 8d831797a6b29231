"""The CPU's name as the benchmarks print it, shared by every script that reports its machine.

"AMD EPYC" alone names two generations whose speeds differ by half (Zen 4, x86 family 25, and
Zen 5, family 26), so the x86 family and model numbers follow the name where /proc/cpuinfo has them.
"""
from __future__ import annotations

import platform
from typing import Dict


def _cpuinfo() -> Dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """e.g. "AMD EPYC (x86 family 25 model 17)"; the platform's processor or machine name elsewhere."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (x86 family {info['cpu family']} model {info['model']})"
    return name
