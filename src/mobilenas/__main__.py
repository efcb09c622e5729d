"""``python -m mobilenas``: the umbrella command (as ``mobilenas``)."""

import sys

from mobilenas.cli import main

sys.exit(main())
