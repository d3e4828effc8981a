"""The code stays ruff-clean, mypy-clean and within its layers: all three run with the tests."""

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


def test_the_layering_contracts_hold() -> None:
    """lint-imports checks [tool.importlinter] in pyproject.toml: the layers of DESIGN.md."""
    venv_tool = Path(sys.executable).with_name("lint-imports")
    tool = str(venv_tool) if venv_tool.exists() else shutil.which("lint-imports") or "lint-imports"
    r = subprocess.run([tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
