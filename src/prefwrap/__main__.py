"""``python -m prefwrap``: the same as the ``prefwrap`` command."""

import sys

from prefwrap.cli import main

sys.exit(main())
