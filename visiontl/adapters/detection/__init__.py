"""Object detection: a YOLOv8-style head and loss (ultralytics) on registry backbones.

The only place visiontl imports ultralytics (AGPL-3.0, like visiontl), always through
``_ultralytics`` (offline, its process-wide patches undone). Names load on first use.
"""
from ..._lazy import exports

_WHERE = {"Detector": ".adapter", "DetectConfig": ".config"}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
