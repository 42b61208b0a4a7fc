"""visiontl — multi-task vision transfer learning on one backbone registry and one engine."""
__version__ = "0.1.0"

import os

# albumentations asks PyPI for a newer version on import (DNS + HTTPS): a library imported by
# visiontl never touches the network on its own
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .backbones import create_backbone, list_backbones  # noqa: E402

__all__ = ["create_backbone", "list_backbones", "__version__"]
