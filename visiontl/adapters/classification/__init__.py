"""Image classification: a registry backbone with a linear (or one-hidden-layer) head."""
from ..._lazy import exports

_WHERE = {"Classifier": ".adapter", "ClassifyConfig": ".config"}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
