"""The engine: poller, health, punch sync. Knows no screen and no HTTP."""
