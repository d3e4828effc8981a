"""fleettui's store: the source of truth and the integration point.

Callers hold a ``Store`` (the typed interface of ``interface.py``) and open
it with ``open_store``, the one place that picks a backend. Every SQL
statement of fleettui lives in this package, one subpackage per backend
(``sqlite/`` today; PostgreSQL later).
"""

from __future__ import annotations

from pathlib import Path

from fleettui.store.errors import ConflictKind, FleetConflict, IdempotencyConflict
from fleettui.store.interface import Store
from fleettui.store.sqlite import SqliteStore


async def open_store(path: str | Path) -> Store:
    """Open the database at ``path`` (created readable by its owner only if new, and
    migrated): SQLite, the embedded default."""
    return await SqliteStore.open(path)


def _conforms(store: SqliteStore) -> Store:
    """Never called: mypy checks here that SqliteStore implements every method of Store."""
    return store


__all__ = ["ConflictKind", "FleetConflict", "IdempotencyConflict", "Store", "open_store"]
