"""What ``predict`` returns: one result per input, in a list-like :class:`Results`.

A result is the plain dict ``predict`` always returned (its keys are the task's numbers:
``labels``/``scores``; ``objects``; ``mask``/``fractions``; ``image``), read as attributes
too, with ways to look at it::

    results = model.predict("photos/")
    results[0].labels, results[0].plot()       # the numbers; the drawn image (H, W, 3) uint8
    results[0].show(); results[0].save("a.png")  # inline in Jupyter, a window elsewhere; a file
    results.to_pandas(); results.to_csv("p.csv")  # one table for the batch
    results.grid()                             # every drawn result in one image

Drawing is :mod:`visiontl.draw`'s, the same as the run's prediction grids.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import draw
from .files import write_csv, write_text
from .data.images import read_image


class Result(dict):
    """One input's prediction (a dict, read as attributes too). ``path`` names the input
    (a file, or ``array[k]`` for an array handed in); ``error`` is set instead of a
    prediction when the input could not be read."""

    task = ""

    def __init__(self, data: dict, *, image: np.ndarray | None = None, classes: Sequence[str] = (),
                 palette: np.ndarray | None = None, alpha: float = 0.45) -> None:
        super().__init__(data)
        # the input itself is kept only where it cannot be read again (arrays, video frames)
        self._image, self._classes, self._palette, self._alpha = image, list(classes), palette, alpha

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no {name!r} (keys: {', '.join(self)})") from None

    @property
    def ok(self) -> bool:
        return not self.get("error")

    def source(self) -> np.ndarray:
        """The input image, RGB uint8."""
        return self._image if self._image is not None else read_image(self["path"])

    def plot(self) -> np.ndarray:
        """The prediction drawn on the input: an RGB uint8 array (enlarged if the input is
        too small for legible labels)."""
        if not self.ok:
            raise ValueError(f"{self['path']}: no prediction to draw ({self['error']})")
        return self.draw_on(self.source())

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        """The prediction drawn on ``image`` (the input, RGB uint8): what ``plot`` shows."""
        raise NotImplementedError

    def show(self) -> Path | None:
        """Inline in a Jupyter notebook, else in the system's image viewer; with no display, a
        PNG file whose path is said and returned."""
        return show_image(self.plot())

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot` to ``path`` (format from its suffix)."""
        return draw.save_image(self.plot(), path)

    def to_dict(self) -> dict:
        """The numbers as JSON-ready values (arrays left out: a mask is ``mask``, or PNG via ``save``)."""
        return {k: v for k, v in self.items() if not isinstance(v, np.ndarray)}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def rows(self) -> list[dict]:
        """This result's rows of the batch table (``Results.to_pandas``)."""
        raise NotImplementedError


class ClassifyResult(Result):
    """``labels`` and ``scores``: the top-k classes and their probabilities, best first."""

    task = "classify"

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        image, _ = draw.canvas(image)
        return draw.banner(image, [f"{lab} {s:.2f}" for lab, s in zip(self["labels"][:3], self["scores"][:3])])

    def rows(self) -> list[dict]:
        row = {"path": self["path"]}
        for j, (lab, s) in enumerate(zip(self["labels"], self["scores"]), 1):
            row[f"label{j}"], row[f"score{j}"] = lab, float(s)
        return [row]


class DetectResult(Result):
    """``objects``: each a ``label``, a ``score`` and a ``box`` (x1, y1, x2, y2 in the input's pixels)."""

    task = "detect"

    @property
    def boxes(self) -> np.ndarray:
        return np.asarray([o["box"] for o in self["objects"]], np.float64).reshape(-1, 4)

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        image, f = draw.canvas(image)
        colors = draw.box_colors(max(1, len(self._classes)))
        index = {c: k for k, c in enumerate(self._classes)}
        objects = self["objects"]
        return draw.draw_boxes(image, self.boxes * f, labels=[f"{o['label']} {o['score']:.2f}" for o in objects],
                               colors=[colors[index.get(o["label"], 0)] for o in objects])

    def rows(self) -> list[dict]:
        return [{"path": self["path"], "label": o["label"], "score": o["score"],
                 **dict(zip(("x1", "y1", "x2", "y2"), o["box"]))} for o in self["objects"]]


class SegmentResult(Result):
    """``mask`` (H, W) class indices at the input's size, ``confidence`` (mean top-class
    probability) and ``fractions`` (share of the pixels per class)."""

    task = "segment"

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        drawn = draw.overlay_mask(image, self["mask"], self._palette, self._alpha)
        drawn, _ = draw.canvas(drawn)
        shares = sorted(((f, c) for c, f in self["fractions"].items() if c != self._classes[0] and f > 0),
                        reverse=True)[:4]
        return draw.banner(drawn, [f"{c} {f:.0%}" for f, c in shares])

    def rows(self) -> list[dict]:
        return [{"path": self["path"], "width": self["width"], "height": self["height"],
                 "confidence": self["confidence"], **{f"fraction_{c}": f for c, f in self["fractions"].items()}}]


class StyleResult(Result):
    """``image``: the stylised input, RGB uint8; ``seconds`` the model's time on it."""

    task = "stylize"

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        return self["image"]

    def source(self) -> np.ndarray:  # the result is an image: the input need not be read again
        return self._image if self._image is not None else self["image"]

    def rows(self) -> list[dict]:
        h, w = self["image"].shape[:2]
        return [{"path": self["path"], "width": w, "height": h, "seconds": round(self["seconds"], 4)}]


class Explanation(Result):
    """Where the model looks. Classification: ``cam`` (H, W) in [0, 1], a class activation map
    (``method``) for ``target`` (by default the predicted ``label``, probability ``score``).
    Segmentation: ``maps`` (C, H, W), each class's per-pixel probability."""

    task = "explain"

    def draw_on(self, image: np.ndarray) -> np.ndarray:
        if "cam" in self:
            drawn, _ = draw.canvas(draw.heatmap(image, self["cam"]))
            lines = [f"{self['method']}: {self['target']}"]
            if self["target"] != self["label"]:
                lines.append(f"predicted {self['label']} {self['score']:.2f}")
            else:
                lines[0] += f" {self['score']:.2f}"
            return draw.banner(drawn, lines)
        panels = [draw.canvas(image)[0]] + [draw.banner(draw.canvas(draw.heatmap(image, m.astype(np.float32)))[0],
                                                        [f"{c}: mean {m.mean():.2f}"])
                                            for c, m in zip(self._classes, self["maps"])]
        return np.concatenate(panels, axis=1)

    def rows(self) -> list[dict]:
        if "cam" in self:
            return [{"path": self["path"], "label": self["label"], "score": round(self["score"], 5),
                     "target": self["target"], "method": self["method"],
                     "cam_mean": round(float(self["cam"].mean()), 4)}]
        return [{"path": self["path"], **{f"mean_{c}": round(float(m.mean()), 4)
                                          for c, m in zip(self._classes, self["maps"])}}]


class Results(list):
    """The results of one ``predict`` call, in input order, with batch views."""

    def rows(self) -> list[dict]:
        """Every result's table rows; an unreadable input is one row with its ``error``."""
        return [row for r in self for row in (r.rows() if r.ok else [{"path": r["path"], "error": r["error"]}])]

    def columns(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows():
            names.update(dict.fromkeys(k for k in row if k != "error"))
        return [*names, "error"]

    def to_pandas(self):
        """A ``pandas.DataFrame`` of :meth:`rows` (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas (pip install pandas); "
                              "Results.to_csv writes the same table without it") from None
        return pd.DataFrame(self.rows(), columns=self.columns())

    def to_csv(self, path: str | Path) -> Path:
        columns = self.columns()
        return write_csv(path, [columns, *([row.get(c, "") for c in columns] for row in self.rows())])

    def to_json(self, path: str | Path | None = None, **kwargs) -> str:
        text = json.dumps([r.to_dict() for r in self], **kwargs)
        if path is not None:
            write_text(path, text)
        return text

    def save(self, folder: str | Path, suffix: str = "") -> list[Path]:
        """Each drawn result as ``<input name><suffix>.png`` in ``folder``."""
        from .data.images import output_stems

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        good = [r for r in self if r.ok]
        return [r.save(folder / f"{stem}{suffix}.png") for r, stem in zip(good, output_stems([r["path"] for r in good]))]

    def grid(self, cols: int = 4, tile: int = 320) -> np.ndarray:
        """Every drawn result, each fitted into a ``tile``² cell, in one RGB image."""
        import cv2

        drawn = [r.plot() for r in self if r.ok]
        if not drawn:
            raise ValueError("no result to draw: every input was unreadable")
        cols = min(cols, len(drawn))
        rows = -(-len(drawn) // cols)
        out = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
        for k, im in enumerate(drawn):
            f = tile / max(im.shape[:2])
            h, w = max(1, round(im.shape[0] * f)), max(1, round(im.shape[1] * f))
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST)
            y, x = (k // cols) * tile + (tile - h) // 2, (k % cols) * tile + (tile - w) // 2
            out[y:y + h, x:x + w] = im
        return out

    def show(self, cols: int = 4) -> Path | None:
        """Every drawn result in one grid, shown as :meth:`Result.show` shows one."""
        return show_image(self.grid(cols))


def show_image(image: np.ndarray) -> Path | None:
    """Inline in Jupyter (IPython's display), else PIL's viewer window; on a machine with no
    display (a server, a container) a PNG file instead, and where it is, said on stderr
    (the viewer would only fail with xdg-open's errors). Returns that file, if any."""
    from PIL import Image

    im = Image.fromarray(image)
    if _in_notebook():
        from IPython.display import display

        display(im)
    elif _has_display():
        im.show()
    else:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="visiontl-show-")) / "result.png"
        draw.save_image(image, path)
        print(f"no display to show it on: saved to {path}", file=sys.stderr)
        return path
    return None


def _has_display() -> bool:
    """A screen to open a viewer window on (X11 or Wayland on Linux and the BSDs; always on
    macOS and Windows)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
