"""fleettui: a terminal control room for fleets of ZKTeco attendance devices."""

__version__ = "0.1.0"
