"""What both backends say alike: the texts, rules and row readers that are not SQL.

Each module answers one question for ``sqlite/`` and ``postgres/`` together
(an alert's event text and webhook payload, when a device change is refused,
how a time column reads), so the two backends write the same bytes and refuse
the same things, and neither copies the other.
"""
