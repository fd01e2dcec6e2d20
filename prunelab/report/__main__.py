"""``python -m prunelab.report DIR...``: the same as ``prunelab report DIR...``."""
import sys

from .render import main

sys.exit(main())
