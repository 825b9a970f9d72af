"""`python -m valle_hf`: see `valle_hf.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
