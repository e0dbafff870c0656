"""Describe the machine and the library versions a benchmark run used."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass

_PROBE = "import importlib, sys; print(getattr(importlib.import_module(sys.argv[1]), '__version__', 'unknown'))"


@dataclass(frozen=True)
class Probe:
    """The outcome of importing a module in a fresh interpreter: its version, or why the import failed."""

    module: str
    version: str | None
    error: str | None


def probe(module: str) -> Probe:
    # A subprocess, so the harness itself never imports the libraries it compares.
    done = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True)
    if done.returncode == 0:
        return Probe(module, done.stdout.strip(), None)
    lines = done.stderr.strip().splitlines()
    return Probe(module, None, lines[-1] if lines else f"exit status {done.returncode}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(probes: list[Probe]) -> list[tuple[str, str]]:
    """Label/value pairs for the report header."""
    lines = [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} cores"),
        ("Kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    lines += [(found.module, found.version or "not importable") for found in probes]
    return lines
