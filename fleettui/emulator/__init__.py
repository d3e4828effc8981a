"""A faithful ZKTeco terminal emulator: the ZK binary protocol on TCP and UDP.

The emulator is a device, nothing more: it owns its protocol constants and
state and imports nothing from the rest of fleettui, so the engine can never
tell it from hardware. ``fleettui emulate`` runs a fleet of them.
"""
