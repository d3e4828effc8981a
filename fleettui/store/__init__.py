"""fleettui's store: the source of truth and the integration point.

Every SQL statement of fleettui lives in this package, one subpackage per
backend (``sqlite/`` today), so that a PostgreSQL store can take its place.
"""

from fleettui.store.errors import ConflictKind, FleetConflict, IdempotencyConflict
from fleettui.store.sqlite import SqliteStore

#: the store every caller uses (SQLite, the embedded default)
Store = SqliteStore

__all__ = ["ConflictKind", "FleetConflict", "IdempotencyConflict", "SqliteStore", "Store"]
