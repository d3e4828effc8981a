"""fleettui's store: the source of truth and the integration point (see store.py)."""

from fleettui.store.store import Store

__all__ = ["Store"]
