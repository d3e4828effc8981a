"""Where a store lives, as ``--db`` names it: a SQLite file, or a PostgreSQL address;
and how such an address is shown (never with its password)."""

from __future__ import annotations

from pathlib import Path
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


class DatabaseUrl:
    """A PostgreSQL database as ``--db``, ``$FLEETTUI_DB`` or ``[paths] db`` name it.

    ``url`` is the address to connect to; ``str()`` and ``repr()`` show it without
    its password, so a log line or an error that prints one leaks nothing. (A
    password is better kept out of the URL: libpq's ``PGPASSWORD`` and
    ``~/.pgpass`` are read too.)
    """

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        if not is_postgres_url(url):
            raise ValueError("expected a postgresql:// address")
        self.url = url

    def __str__(self) -> str:
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"DatabaseUrl({display_url(self.url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseUrl) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


#: where a store lives: a SQLite file or a PostgreSQL database
StoreTarget = Path | DatabaseUrl


def store_target(text: str) -> StoreTarget:
    """A ``--db`` value as the store it names: a PostgreSQL address, else a file path."""
    text = text.strip()
    return DatabaseUrl(text) if is_postgres_url(text) else Path(text).expanduser()
