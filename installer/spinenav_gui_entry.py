"""PyInstaller entry point of the windowed app (``spinenav-gui``)."""

import sys

from navapp.app import main

if __name__ == "__main__":
    sys.exit(main())
