"""`python -m pgkeep` runs the command line."""

from pgkeep.cli import main

raise SystemExit(main())
