"""Semantic segmentation: registry backbone + smp decoder (U-Net, FPN, DeepLabV3+)."""
from .adapter import Segmenter
from .config import SegmentConfig
from .model import DECODERS, SegmentationModel

__all__ = ["DECODERS", "SegmentConfig", "SegmentationModel", "Segmenter"]
