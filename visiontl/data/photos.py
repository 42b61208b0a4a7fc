"""Built-in style-transfer data: colour photos as content and a painting as the style,
from files that installed packages ship (no download).

Content: scikit-image's colour photos (``skimage.data``: astronaut, chelsea, coffee, rocket,
motorcycle, retina, ihc, hubble deep field), written as PNGs. Style: Van Gogh's Starry Night
from Debian's ``opencv-doc`` examples when installed, otherwise scikit-image's brick texture.
The last two photos are kept apart for validation.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .builtin import cache_dir

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
          "ihc.png", "hubble_deep_field.jpg"]
VAL = 2  # the last photos are the validation folder
STARRY_NIGHT = Path("/usr/share/doc/opencv-doc/examples/data/starry_night.jpg")


def _skimage_data() -> Path:
    try:
        import skimage
    except ImportError:
        raise FileNotFoundError("the built-in style photos need scikit-image (pip install 'visiontl[datasets]')") from None
    return Path(os.path.dirname(skimage.__file__)) / "data"


def materialize_photos(*, root: Path | None = None) -> tuple[Path, Path, Path]:
    """Write ``<root>/{train,val}/*.png`` and ``<root>/style.png`` (once); returns
    (train folder, val folder, style image)."""
    root = root or cache_dir() / "datasets" / "style-photos-v1"
    train, val, style = root / "train", root / "val", root / "style.png"
    if (root / ".complete").is_file():
        return train, val, style
    source = _skimage_data()
    for i, name in enumerate(PHOTOS):
        folder = val if i >= len(PHOTOS) - VAL else train
        folder.mkdir(parents=True, exist_ok=True)
        image = np.asarray(Image.open(source / name).convert("RGB"))
        Image.fromarray(image).save(folder / f"{Path(name).stem}.png")
    painting = STARRY_NIGHT if STARRY_NIGHT.is_file() else source / "brick.png"
    Image.open(painting).convert("RGB").save(style)
    (root / "README.txt").write_text(__doc__ + f"\nstyle: {painting}\n")
    (root / ".complete").touch()
    return train, val, style
