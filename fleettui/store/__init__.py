"""fleettui's store: the source of truth and the integration point.

Callers hold a ``Store`` (the typed interface of ``interface.py``) and open
it with ``open_store``, the one place that picks a backend. Every SQL
statement of fleettui lives in this package, one subpackage per backend
(``sqlite/``, the embedded default; ``postgres/``, for several pollers on one
database).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fleettui.store.errors import ConflictKind, FleetConflict, IdempotencyConflict
from fleettui.store.interface import Store
from fleettui.store.sqlite import SqliteStore
from fleettui.store.where import DatabaseUrl, StoreTarget, is_postgres_url, store_target

if TYPE_CHECKING:  # imported when a PostgreSQL store is opened (asyncpg loads then)
    from fleettui.store.postgres import PostgresStore


async def open_store(where: str | Path | DatabaseUrl) -> Store:
    """Open the database ``where`` names, migrated: a ``postgresql://`` address (the
    database must exist; the URL is never shown with its password), else a SQLite file
    (created readable by its owner only if new), the embedded default."""
    if isinstance(where, str) and is_postgres_url(where):
        where = DatabaseUrl(where)
    if isinstance(where, DatabaseUrl):
        from fleettui.store.postgres import PostgresStore

        return await PostgresStore.open(where.url)
    return await SqliteStore.open(where)


def _conforms(store: SqliteStore) -> Store:
    """Never called: mypy checks here that SqliteStore implements every method of Store."""
    return store


def _conforms_too(store: PostgresStore) -> Store:
    """Never called: mypy checks here that PostgresStore implements every method of Store."""
    return store


__all__ = ["ConflictKind", "DatabaseUrl", "FleetConflict", "IdempotencyConflict", "Store",
           "StoreTarget", "open_store", "store_target"]
