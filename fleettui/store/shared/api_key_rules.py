"""API keys as both backends make and check them: the roles, a new key, what is stored of
it (its SHA-256 and first characters, never the key), and a row read back as an ApiKey."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from fleettui.domain import ApiKey
from fleettui.store.shared.row_times import TimeOf, native_time, required_time

#: API roles, each allowed what the ones before it are
API_ROLES = ("viewer", "operator", "admin")
#: the columns an ApiKey is read from
API_KEY_COLUMNS = "id, name, role, prefix, created_at, last_used_at, revoked_at"


def new_api_key(role: str) -> str:
    """A new key for ``role`` (ValueError for a role that is not one of API_ROLES)."""
    if role not in API_ROLES:
        raise ValueError(f"role: expected one of {', '.join(API_ROLES)}")
    return "ftk_" + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    """The first characters of a key, stored to tell keys apart."""
    return key[:8]


def key_hash(key: str) -> str:
    """What is stored of an API key."""
    # API keys are 256 random bits: a plain SHA-256 is enough (no password stretching)
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_of_row(r: Any, when: TimeOf = native_time) -> ApiKey:
    """An ``api_keys`` row (``API_KEY_COLUMNS``) as an ApiKey."""
    return ApiKey(id=r["id"], name=r["name"], role=r["role"], prefix=r["prefix"],
                  created_at=required_time(when, r["created_at"]),
                  last_used_at=when(r["last_used_at"]), revoked_at=when(r["revoked_at"]))
