"""``python -m tasks.training``: the training pod's command (see ``tasks.training.cli``)."""

import sys

from tasks.training.cli import main

sys.exit(main())
