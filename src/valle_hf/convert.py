"""`python -m valle_hf.convert`: see `valle_hf.conversion`."""

import sys

from .conversion import main

if __name__ == "__main__":
    sys.exit(main())
