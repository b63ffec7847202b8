"""``python -m napari_klip.cli``: the ``napari-klip`` command line."""

import sys

from . import main

sys.exit(main())
