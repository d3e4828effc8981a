"""The code stays ruff-clean and mypy-clean: both run as part of the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    venv_ruff = Path(sys.executable).with_name("ruff")
    ruff = str(venv_ruff) if venv_ruff.exists() else shutil.which("ruff") or "ruff"
    r = subprocess.run(
        [ruff, "check", "fleettui", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean() -> None:
    """mypy --strict over fleettui/ (settings in pyproject.toml, pydantic's plugin)."""
    venv_mypy = Path(sys.executable).with_name("mypy")
    mypy = str(venv_mypy) if venv_mypy.exists() else shutil.which("mypy") or "mypy"
    r = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
