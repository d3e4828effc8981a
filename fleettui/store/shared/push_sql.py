"""The push queries both backends say alike (``$1`` is each one's first parameter)."""

from __future__ import annotations

#: push commands started whose lines are all answered (or that have none), the last answer
#: (or the start) before $1: what a listener stopped between two steps left behind
STRANDED = (
    "SELECT c.id, c.device_id FROM commands c JOIN devices d ON d.id = c.device_id"
    " WHERE c.state = 'sent' AND d.transport = 'push'"
    " AND NOT EXISTS (SELECT 1 FROM push_lines l WHERE l.command_id = c.id"
    " AND l.state IN ('queued', 'sent'))"
    " AND COALESCE((SELECT max(l.answered_at) FROM push_lines l WHERE l.command_id = c.id),"
    " c.updated_at) < $1"
    " ORDER BY c.id"
)
