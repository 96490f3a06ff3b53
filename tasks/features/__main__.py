"""``python -m tasks.features``: the features CLI (see ``tasks.features.cli``; ``airloop features``)."""

import sys

from tasks.features.cli import main

sys.exit(main())
