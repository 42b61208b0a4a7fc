"""``python -m visiontl …``: the ``visiontl`` command without its installed script."""
import sys

from .cli import main

sys.exit(main())
