"""Where a store lives, as ``--db`` names it: a SQLite file, or a PostgreSQL address;
and how such an address is shown (never with its password)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def is_postgres_url(text: str) -> bool:
    """Whether a ``--db`` value names a PostgreSQL database rather than a SQLite file."""
    return text.startswith(("postgresql://", "postgres://"))


def display_url(url: str) -> str:
    """A database URL fit to print: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
