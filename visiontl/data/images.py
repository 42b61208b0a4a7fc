"""Reading images: any mode in (grayscale, RGBA, palette, 16-bit, CMYK), RGB uint8 out,
or a clear error that names the file."""
from __future__ import annotations

import hashlib
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()  # a dataset's subset(indices, transform=KEEP) keeps its transform; None: no transform


class DataError(ValueError):
    """A dataset on disk is not usable (any task); the message names the file or folder."""


class BadImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


@contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` with PIL's pixel limit as an error (a decompression bomb is
    refused from its header); any failure while opening or decoding inside the block is a
    BadImageError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except FileNotFoundError:
        raise BadImageError(f"{path}: file not found") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise BadImageError(f"{path}: refused: its header claims more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                            "(a decompression bomb, or an image too large to decode safely)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def check_image(path: str | Path) -> tuple[int, int]:
    """Read only the header: (width, height), or BadImageError. Fast enough to run on
    every file before training starts, so a bad file fails the run at once."""
    with _opened(path) as im:
        return im.size


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an RGB ``uint8`` array of shape (H, W, 3).

    Grayscale is repeated to three channels, alpha is composited onto white,
    16-bit and 32-bit images are scaled to 8 bits by their type's range.
    """
    with _opened(path) as im:
        im.load()
        return to_rgb8(im)


def to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if im.mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        else:  # 16-bit (PIL reads some as mode I): scale by the 16-bit range
            arr = arr.astype(np.float64) / (65535.0 if arr.max() > 255 or im.mode.startswith("I;16") else 255.0) * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def list_images(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def is_array(item) -> bool:
    """An image handed in as data (a numpy array or a PIL image), not as a file."""
    return isinstance(item, (np.ndarray, Image.Image))


def expand_inputs(inputs) -> list:
    """An image file, a folder (recursively), a ``.txt`` list of paths, an image array
    (H×W or H×W×3/4, uint8) or PIL image, or a list of these: a list of paths and arrays."""
    items = [inputs] if isinstance(inputs, (str, Path)) or is_array(inputs) else list(inputs)
    paths: list = []
    for item in items:
        if is_array(item):
            paths.append(item)
            continue
        item = Path(item)
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise FileNotFoundError(f"{item}: folder has no images")
            paths += found
        elif item.suffix.lower() == ".txt" and item.is_file():
            paths += [Path(line.strip()) for line in item.read_text().splitlines() if line.strip()]
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    return paths


def output_stems(paths: Sequence[str | Path]) -> list[str]:
    """A distinct file-name stem per input for the files predict writes: the image's own stem,
    or, where two inputs share it (``a/x.png``, ``b/x.png``), their parent folders' names in
    front (``a_x``, ``b_x``), then a number. A stem too long for a file name with a suffix
    (over 200 bytes) keeps its start and a short hash of the whole."""
    paths = [Path(f"array{k}") if is_array(p) else Path(str(p).replace("[", "").replace("]", ""))
             if str(p).startswith("array[") else Path(p) for k, p in enumerate(paths)]
    stems = [_fitting(p.stem) for p in paths]
    for depth in (1, 2, 3):
        counts = Counter(stems)
        clash = [i for i, s in enumerate(stems) if counts[s] > 1]
        if not clash:
            return stems
        for i in clash:
            parents = [q.name for q in paths[i].parents][:depth][::-1]
            stems[i] = _fitting("_".join([*(n for n in parents if n not in ("", ".", "..")), paths[i].stem]))
    seen: Counter = Counter()
    out = []
    for s in stems:
        seen[s] += 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out


def _fitting(stem: str, limit: int = 200) -> str:
    raw = stem.encode()
    if len(raw) <= limit:
        return stem
    return raw[:limit - 11].decode(errors="ignore") + "-" + hashlib.sha256(raw).hexdigest()[:10]


def readable(paths: Sequence, start: int = 0) -> Iterator[tuple[Path | str, np.ndarray | None, str | None]]:
    """``(path, image or None, error or None)`` per input: an unreadable image is reported, not
    raised, so one bad file does not end a whole ``predict``. An array input's path is
    ``array[k]`` (a str, not a Path: nothing on disk to read again), k counted from ``start``."""
    for k, path in enumerate(paths, start):
        if is_array(path):
            try:
                yield f"array[{k}]", array_rgb8(path), None
            except BadImageError as e:
                yield f"array[{k}]", None, f"array[{k}]: {e}"
            continue
        try:
            yield path, read_image(path), None
        except BadImageError as e:
            yield path, None, str(e)


def array_rgb8(image) -> np.ndarray:
    """An image array (H×W, H×W×1/3/4, uint8; RGB order) or a PIL image as RGB uint8 (H, W, 3)."""
    if isinstance(image, Image.Image):
        return to_rgb8(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise BadImageError(f"an image array must be uint8 (0–255), got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise BadImageError(f"an image array must be H×W or H×W×3 (RGB) or ×4 (RGBA), got shape {a.shape}")
    return to_rgb8(Image.fromarray(a)) if a.shape[2] == 4 else np.ascontiguousarray(a)


def report_unreadable(results: list[dict]) -> None:
    """Print the inputs ``predict`` skipped (results with an ``error``) to stderr."""
    bad = [r for r in results if r.get("error")]
    if bad:
        print(f"skipped {len(bad)} unreadable input(s) of {len(results)}:", file=sys.stderr)
        for r in bad:
            print(f"  {r['error']}", file=sys.stderr)
