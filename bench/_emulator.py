"""Shared bench helpers: run ``fleettui emulate`` in its own process, and summarise timings.

The emulator runs as a separate process (as it does for users), so the
benchmark's pyzk clients and the emulator do not share one interpreter lock.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunningFleet:
    """A ``fleettui emulate`` process and what it wrote."""

    proc: subprocess.Popen[str]
    config: dict[str, Any]
    control_url: str
    #: the config file as written (TOML text)
    config_text: str = ""


@contextmanager
def emulator(*args: str) -> Iterator[RunningFleet]:
    """Start ``fleettui emulate ARGS`` and stop it (SIGTERM) on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "fleet.toml"
        cmd = [sys.executable, "-m", "fleettui", "emulate", *args, "--config-out", str(config_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        control_url = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"control API\s+(http://\S+?)/devices", line)
            if m:
                control_url = m.group(1)
            if line.startswith("Ctrl+C"):
                break
        else:
            raise SystemExit(f"emulator exited early with {proc.wait()}")
        try:
            text = config_path.read_text()
            yield RunningFleet(proc, tomllib.loads(text), control_url, text)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def table(rows: list[tuple[str, str]]) -> str:
    """A two-column text table."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def rss_mb() -> float:
    """This process's resident set size in MB, from /proc/self/status (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
