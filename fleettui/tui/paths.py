"""Where the app's stylesheets live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


def styles_dir() -> Path:
    """The styles/ folder: inside the package (wheel), else next to it (checkout)."""
    for candidate in (_PKG / "styles", _PKG.parent / "styles"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"styles/ not found next to {_PKG}")
