"""``python -m robseg_lib``: the command line of :mod:`robseg_lib.cli`."""

import sys

from robseg_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
