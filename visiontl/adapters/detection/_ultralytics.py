"""ultralytics as visiontl uses it, imported here first by every module of the detection task.

It is told never to reach the network or install packages at run time (visiontl needs
neither from it), and the two functions it patches process-wide on import are put back:
PIL's ``Image.open`` (to pip-install a HEIF plugin on the first unidentified file) and
``torch.save`` (retries with sleeps). visiontl reports bad images itself and writes
checkpoints atomically.
"""
import os

os.environ.setdefault("YOLO_OFFLINE", "true")  # 8.4.0 reads only "true" (no DNS look-up at import)
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# recent ultralytics releases can build models without eval and from known layers only; visiontl
# checks every architecture itself first (native.check_architecture), this is a second line
os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import ultralytics.nn.tasks  # noqa: E402,F401  (the whole stack the task uses: its patches apply now)
import ultralytics.utils.loss  # noqa: E402,F401
import ultralytics.utils.nms  # noqa: E402,F401
from ultralytics.utils import patches  # noqa: E402

Image.open = getattr(patches, "_image_open", Image.open)
torch.save = getattr(patches, "_torch_save", torch.save)
