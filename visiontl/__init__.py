"""visiontl — multi-task vision transfer learning on one backbone registry and one engine."""
__version__ = "0.1.0"

from .backbones import create_backbone, list_backbones  # noqa: E402

__all__ = ["create_backbone", "list_backbones", "__version__"]
