"""Drawing on images, shared by ``predict``'s results, the run's prediction grids, video and
the web page: boxes with filled, readable labels, class-coloured mask overlays, a caption
banner. Text uses DejaVu Sans, the font matplotlib ships, so drawing needs no download and
looks the same everywhere; line widths and text scale with the image, and an image too
small to label legibly is enlarged first (:func:`canvas`)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import replacing
from .plots import short

MIN_SIDE = 320  # images whose shorter side is below this are enlarged before text is drawn on them


@lru_cache(maxsize=16)
def font(size: int):
    """DejaVu Sans at ``size`` pixels (matplotlib's copy of it; Pillow's own as a fallback)."""
    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:  # pragma: no cover - matplotlib always ships it
        return ImageFont.load_default(size=size)


def canvas(image: np.ndarray, min_side: int = MIN_SIDE) -> tuple[np.ndarray, float]:
    """``(image, factor)``: the image enlarged by a whole factor (nearest neighbour: pixels stay
    crisp) until its shorter side reaches ``min_side``, so a label drawn on it can be read."""
    f = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    return (image.repeat(f, 0).repeat(f, 1) if f > 1 else image), float(f)


def sizes(image: np.ndarray) -> tuple[int, int]:
    """(line width, font size) in pixels for an image of this size."""
    side = (image.shape[0] + image.shape[1]) / 2
    return max(2, round(side * 0.004)), max(12, round(side * 0.03))


def text_color(color: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``color`` (its luma)."""
    r, g, b = color[:3]
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _label(draw, xy: tuple[float, float], text: str, color, fnt, *, below: bool = False) -> None:
    """``text`` on a filled box of ``color`` whose bottom-left corner is ``xy`` (top-left with ``below``)."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=fnt)
    w, h, pad = x1 - x0, y1 - y0, max(2, fnt.size // 6)
    x, y = xy
    top = y if below else y - h - 2 * pad
    if top < 0:
        top = y if not below else 0
    draw.rectangle([x, top, x + w + 2 * pad, top + h + 2 * pad], fill=tuple(color))
    draw.text((x + pad - x0, top + pad - y0), text, fill=text_color(color), font=fnt)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, *, labels: Sequence[str] = (),
               colors: Sequence[Sequence[int]] | None = None, color=(255, 0, 0), width: int = 0) -> np.ndarray:
    """A copy of RGB ``image`` with xyxy ``boxes`` (its pixels) drawn, each with its label on a
    filled background in the box's colour (``colors`` per box, else ``color``). Enlarge a small
    image with :func:`canvas` first (and the boxes by its factor) for legible labels."""
    from PIL import Image, ImageDraw

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    lw, fs = sizes(image)
    im = Image.fromarray(image).convert("RGB")
    draw, fnt = ImageDraw.Draw(im), font(fs)
    for k, box in enumerate(boxes.tolist()):
        c = tuple(int(v) for v in (colors[k] if colors is not None else color))
        draw.rectangle(box, outline=c, width=width or lw)
        if k < len(labels) and labels[k]:
            _label(draw, (box[0], box[1]), short(labels[k], 32), c, fnt)
    return np.asarray(im)


def banner(image: np.ndarray, lines: Sequence[str], *, color=(20, 20, 20), first=(31, 119, 180)) -> np.ndarray:
    """A copy of ``image`` with ``lines`` of text in filled boxes at its top left, the first
    one on ``first`` (the headline: the top class), the others on ``color``."""
    from PIL import Image, ImageDraw

    _, fs = sizes(image)
    im = Image.fromarray(image).convert("RGB")
    draw, fnt = ImageDraw.Draw(im), font(fs)
    y = 0
    for k, line in enumerate(lines):
        _label(draw, (0, y), short(line, 40), first if k == 0 else color, fnt, below=True)
        y += draw.textbbox((0, 0), "Ag", font=fnt)[3] + 2 * max(2, fs // 6)
    return np.asarray(im)


def save_image(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    with replacing(path) as tmp:
        Image.fromarray(image).save(tmp)
    return Path(path)


# a black background, then well-separated colours (matplotlib's tab10, then tab20's lighter ones)
_CLASS_COLORS = [(0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232),
                 (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210)]


def class_palette(num_classes: int, given: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """(classes, 3) uint8 colours: ``given`` if any, else black for class 0 and distinct
    colours for the rest (repeating, slightly shifted, past 18 classes)."""
    if given:
        return np.asarray(given, np.uint8).reshape(-1, 3)
    out = [_CLASS_COLORS[k % len(_CLASS_COLORS)] for k in range(num_classes)]
    return np.asarray([(np.array(c) + 37 * (k // len(_CLASS_COLORS))) % 256 for k, c in enumerate(out)], np.uint8)


def box_colors(num_classes: int) -> np.ndarray:
    """(classes, 3) colours for boxes: the palette without its black background entry."""
    return class_palette(num_classes + 1)[1:]


def colorize_mask(mask: np.ndarray, palette: np.ndarray, void_color=(255, 255, 255)) -> np.ndarray:
    """Class indices (H, W) → RGB (H, W, 3); indices past the palette (void) in ``void_color``."""
    table = np.concatenate([palette, np.tile(np.asarray(void_color, np.uint8), (256 - len(palette), 1))])
    return table[np.clip(mask, 0, 255).astype(np.uint8)]


def overlay_mask(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` with every class whose colour is not black tinted in its colour."""
    colors = colorize_mask(mask, palette, void_color=(0, 0, 0)).astype(np.float32)
    tinted = colors.any(axis=2, keepdims=True)
    out = np.where(tinted, (1 - alpha) * image + alpha * colors, image)
    return out.clip(0, 255).astype(np.uint8)


def heatmap(image: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` under a jet-coloured map of ``values`` in [0, 1] (H, W), resized to the image."""
    import cv2

    v = cv2.resize(np.asarray(values, np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colors = cv2.applyColorMap(np.uint8(255 * v.clip(0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    return ((1 - alpha) * image + alpha * colors).clip(0, 255).astype(np.uint8)


def save_index_mask(mask: np.ndarray, palette: np.ndarray, path: str | Path) -> Path:
    """A palette PNG: pixel values are the class indices, viewers show the class colours."""
    from PIL import Image

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    im.putpalette(colorize_mask(np.arange(256)[None], palette).reshape(-1).tolist())
    with replacing(path) as tmp:
        im.save(tmp)
    return Path(path)

