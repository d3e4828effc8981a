"""When an API key's use is written to the store: at most once a minute per key.

Every authenticated request used to write ``last_used_at``: one write
transaction per read, contending with the poller's writes. ``last_used_at`` is
for people (``fleettui api-key list``), so a minute's precision is enough.
The note of what was written is in memory: a restart writes at the first use.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: at most one ``last_used_at`` write per key per this long
KEY_USE_INTERVAL = timedelta(minutes=1)


class KeyUseNotes:
    """When each key's use was last written (by this process), to skip the writes between."""

    def __init__(self, interval: timedelta = KEY_USE_INTERVAL) -> None:
        self.interval = interval
        self._written: dict[int, datetime] = {}

    def due(self, key_id: int, now: datetime) -> bool:
        """Whether the use of ``key_id`` at ``now`` should be written; notes it if so.

        Noted before the write, so concurrent requests of one key write once.
        A clock that went back (``now`` before the note) writes again.
        """
        last = self._written.get(key_id)
        if last is not None and last <= now < last + self.interval:
            return False
        self._written[key_id] = now
        return True
