"""``python -m multienc``: the command line of :mod:`multienc.cli` (no arguments: the default training run)."""
import sys

from multienc.cli import main

sys.exit(main())
