"""``python -m tasks.backtest``: the same as ``python -m tasks.backtest.cli``."""

import sys

from tasks.backtest.cli import main

sys.exit(main())
