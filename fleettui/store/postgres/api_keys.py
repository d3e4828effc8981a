"""API keys: made, checked by hash, used, revoked; only a key's SHA-256 is stored."""

from __future__ import annotations

from datetime import datetime

from fleettui.domain import ApiKey, KeyGrant, NewApiKey
from fleettui.store.postgres.connection import PostgresConnection
from fleettui.store.shared.api_key_rules import (
    API_KEY_COLUMNS,
    api_key_of_row,
    key_hash,
    key_prefix,
    new_api_key,
)


class ApiKeyQueries(PostgresConnection):
    """API keys; only their SHA-256 is stored (the key is never written, nor logged)."""

    async def create_api_key(self, role: str, name: str, now: datetime) -> NewApiKey:
        """Make a key (see ``Store.create_api_key``): show the key once."""
        key = new_api_key(role)
        key_id = await self._transaction(lambda db: db.fetchval(
            "INSERT INTO api_keys (name, role, prefix, hash, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            name, role, key_prefix(key), key_hash(key), now))
        return NewApiKey(int(key_id), key)

    async def api_key_role(self, key: str, now: datetime, *,
                           record_use: bool = True) -> KeyGrant | None:
        """The id and role of a live key, or None (see ``Store.api_key_role``)."""
        row = await self._fetchrow(
            "SELECT id, role FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
            key_hash(key))
        if row is None:
            return None
        if record_use:
            await self.record_api_key_use(int(row["id"]), now)
        return KeyGrant(int(row["id"]), str(row["role"]))

    async def record_api_key_use(self, key_id: int, now: datetime) -> None:
        """Write that key ``key_id`` was used at ``now`` (its ``last_used_at``)."""
        await self._transaction(lambda db: db.execute(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2", now, key_id))

    async def api_keys(self) -> list[ApiKey]:
        """Every key's id, name, role, prefix and dates (never the key)."""
        rows = await self._fetch(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY id")
        return [api_key_of_row(r) for r in rows]

    async def revoke_api_key(self, key_id: int, now: datetime) -> bool:
        """Revoke a key; False if there is no such live key."""
        revoked = await self._transaction(lambda db: db.fetchval(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
            " RETURNING id", now, key_id))
        return revoked is not None
