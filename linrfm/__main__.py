"""``python -m linrfm``: the same as the ``linrfm`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
