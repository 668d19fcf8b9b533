"""`python -m minirun` is the same as the `minirun` console script."""

import sys

from minirun.cli import main

sys.exit(main())
