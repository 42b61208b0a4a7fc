"""visiontl — multi-task vision transfer learning on one backbone registry and one engine.

Importing the package loads nothing heavy: torch and the task libraries load on first use
(``visiontl --help`` answers without them)."""
__version__ = "0.1.0"

import os

# albumentations asks PyPI for a newer version on import (DNS + HTTPS): a library imported by
# visiontl never touches the network on its own
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["create_backbone", "list_backbones", "__version__"]


def __getattr__(name: str):
    if name in ("create_backbone", "list_backbones"):
        from . import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
