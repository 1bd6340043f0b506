"""``python -m finout_provider``: the ``finout-provider`` command line."""

from finout_provider.cli import main

raise SystemExit(main())
