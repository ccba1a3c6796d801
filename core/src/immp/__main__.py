"""``python -m immp`` is the ``immp`` command."""

import sys

from ._runner import LocalFilter, main

__all__ = ["LocalFilter"]

if __name__ == "__main__":
    sys.exit(main())
