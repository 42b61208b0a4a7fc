"""Semantic segmentation: registry backbone + smp decoder (U-Net, FPN, DeepLabV3+)."""
from ..._lazy import exports

_WHERE = {"Segmenter": ".adapter", "SegmentConfig": ".config", "DECODERS": ".model", "SegmentationModel": ".model"}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
