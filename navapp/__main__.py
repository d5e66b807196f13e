"""``python -m navapp`` runs the desktop app, like ``spinenav-gui``."""

import sys

from .app import main

sys.exit(main())
