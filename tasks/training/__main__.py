"""``python -m tasks.training``: the training pod's command (see ``tasks.training.run``)."""

import sys

from tasks.training.run import main

sys.exit(main())
