"""``python -m tasks.monitoring``: the same as ``python -m tasks.monitoring.cli``."""

import sys

from tasks.monitoring.cli import main

sys.exit(main())
