"""`python -m engine`: the command line (see engine/cli.py)."""

from engine.cli import main

raise SystemExit(main())
