"""``python -m fleettui``: the same as the ``fleettui`` command."""

from fleettui.cli import main

raise SystemExit(main())
