"""PyInstaller entry point of the command line (``spinenav``)."""

import sys

from inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
