"""API keys: made, checked by hash, used, revoked."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from fleettui.domain import ApiKey, KeyGrant, NewApiKey
from fleettui.store.shared.api_key_rules import (
    API_KEY_COLUMNS,
    api_key_of_row,
    key_hash,
    key_prefix,
    new_api_key,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, ts


class ApiKeyQueries(SqliteConnection):
    """API keys; only their SHA-256 is stored."""

    async def create_api_key(self, role: str, name: str, now: datetime) -> NewApiKey:
        """Make a key. Only its SHA-256 is stored: show the key once."""
        key = new_api_key(role)
        def write(db: sqlite3.Connection) -> NewApiKey:
            cur = db.execute(
                "INSERT INTO api_keys (name, role, prefix, hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, role, key_prefix(key), key_hash(key), ts(now)),
            )
            return NewApiKey(int(cur.lastrowid or 0), key)
        return await self._transaction(write)

    async def api_key_role(self, key: str, now: datetime, *,
                           record_use: bool = True) -> KeyGrant | None:
        """The id and role of a live key, or None; records its use unless ``record_use`` is False
        (a read only: the HTTP API records uses itself, at most once a minute)."""
        rows = await fetch(
            self._db, "SELECT id, role FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
            (key_hash(key),),
        )
        if not rows:
            return None
        if record_use:
            await self.record_api_key_use(int(rows[0]["id"]), now)
        return KeyGrant(int(rows[0]["id"]), str(rows[0]["role"]))

    async def record_api_key_use(self, key_id: int, now: datetime) -> None:
        """Write that key ``key_id`` was used at ``now`` (its ``last_used_at``)."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                       (ts(now), key_id))
        await self._transaction(write)

    async def api_keys(self) -> list[ApiKey]:
        """Every key's id, name, role, prefix and dates (never the key)."""
        rows = await fetch(self._db, f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY id")
        return [api_key_of_row(r, from_ts) for r in rows]

    async def revoke_api_key(self, key_id: int, now: datetime) -> bool:
        """Revoke a key; False if there is no such live key."""
        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (ts(now), key_id),
            )
            return cur.rowcount > 0
        return await self._transaction(write)
