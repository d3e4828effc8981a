"""The emulator is a device, nothing more: it imports nothing of fleettui outside itself.

DESIGN.md's rule, checked on the source so that it cannot drift: if the
emulator could reach into the engine, tests against it would prove less.
"""

from __future__ import annotations

import ast
from pathlib import Path

EMULATOR = Path(__file__).resolve().parent.parent / "fleettui" / "emulator"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_emulator_imports_only_itself_from_fleettui() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in EMULATOR.glob("*.py")
        for name in _imports(path)
        if name.startswith("fleettui") and not name.startswith("fleettui.emulator")
    }
    assert offenders == set()


def test_emulator_does_not_use_the_client_library() -> None:
    # the emulator must be written from the protocol, not borrowed from pyzk
    users = {path.name for path in EMULATOR.glob("*.py") if "zk" in _imports(path)}
    assert users == set()
