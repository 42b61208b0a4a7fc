"""Object detection: a YOLOv8-style head and loss (ultralytics) on registry backbones.

The only place visiontl imports ultralytics (AGPL-3.0, like visiontl). It is told never to
reach the network or install packages at run time; visiontl needs neither from it.
"""
import os

os.environ.setdefault("YOLO_OFFLINE", "true")  # 8.4.0 reads only "true" (no DNS look-up at import)
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# recent ultralytics releases can build models without eval and from known layers only; visiontl
# checks every architecture itself first (native.check_architecture), this is a second line
os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")

import torch as _torch  # noqa: E402
from PIL import Image as _Image  # noqa: E402

from .adapter import Detector, print_detections, write_detections  # noqa: E402
from .config import DetectConfig  # noqa: E402

# importing ultralytics patches two functions process-wide: PIL's Image.open (to pip-install a
# HEIF plugin on the first unidentified file) and torch.save (retries with sleeps). visiontl
# reports bad images itself and writes checkpoints atomically: undo both
from ultralytics.utils import patches as _patches  # noqa: E402

_Image.open = getattr(_patches, "_image_open", _Image.open)
_torch.save = getattr(_patches, "_torch_save", _torch.save)

__all__ = ["DetectConfig", "Detector", "print_detections", "write_detections"]
