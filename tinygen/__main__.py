"""``python -m tinygen``: the command line of :mod:`tinygen.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
