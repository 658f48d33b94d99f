"""The ``grurec`` command line (filled in as the trainer lands)."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("grurec: nothing here yet", file=sys.stderr)
    return 0
