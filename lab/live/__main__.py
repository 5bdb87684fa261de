"""python -m lab.live: the live evaluation."""

from lab.live.cli import main

raise SystemExit(main())
