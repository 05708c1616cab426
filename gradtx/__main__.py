"""``python -m gradtx``: see :mod:`gradtx.cli`."""

import sys

from gradtx.cli import main

if __name__ == "__main__":
    sys.exit(main())
