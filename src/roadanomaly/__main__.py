"""Allow ``python -m roadanomaly``."""

from roadanomaly.cli import main

raise SystemExit(main())
