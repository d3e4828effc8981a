"""The Textual control room: a view over the engine and the store (never a device)."""
