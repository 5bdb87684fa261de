"""`python -m lab.eval`."""

import sys

from lab.eval.cli import main

sys.exit(main())
