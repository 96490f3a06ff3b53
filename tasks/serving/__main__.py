"""``python -m tasks.serving``: the serve container's command (see ``tasks.serving.process``)."""

import sys

from tasks.serving.process import main

sys.exit(main())
