"""``python -m napari_alseg.cli``: the ``alseg`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
