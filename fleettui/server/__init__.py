"""fleettui's HTTP API: a read and command view over the store (never talks to devices)."""

from fleettui.server.app import make_app, start_server

__all__ = ["make_app", "start_server"]
