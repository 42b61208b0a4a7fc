"""Plots every task shares: curves from ``metrics.csv``, confusion matrices, image grids.

Figures are drawn with matplotlib's object API (``Figure``), never through pyplot: importing
visiontl chooses no backend, so inline plots in a notebook keep working beside it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import replacing


def subplots(*args, figsize: tuple[float, float] | None = None, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, on a figure pyplot does not track (save it
    with :func:`save`)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def counted(n: int, noun: str, plural: str = "") -> str:
    """``1 class``, ``2 classes``: a number with its noun in the right form."""
    return f"{n} {noun if n == 1 else plural or noun + ('es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's')}"


def short(text: str, limit: int = 24) -> str:
    """A label that fits a plot: long class or file names keep their start and end."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}…{text[-(limit - limit // 2):]}"


def curves(history: list[dict], path: str | Path) -> Path:
    """One panel for losses (the training loss's named parts dashed), one for every other
    validation metric, against epochs."""
    epochs = [h["epoch"] for h in history]
    losses = [k for k in history[0] if k.endswith("loss")]
    parts = [k for k in history[0] if k.startswith("train/") and k not in losses and k != "train/images_per_s"]
    others = [k for k in history[0] if k.startswith("val/") and not k.endswith("loss")]
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for k in losses:
        axes[0].plot(epochs, [h.get(k, np.nan) for h in history], marker="o", label=k)
    for k in parts:
        axes[0].plot(epochs, [h.get(k, np.nan) for h in history], linestyle="--", label=k)
    axes[0].set(title="loss", xlabel="epoch")
    values = []
    for k in others:
        values += [h[k] for h in history if isinstance(h.get(k), float) and np.isfinite(h[k])]
        axes[1].plot(epochs, [h.get(k, np.nan) for h in history], marker="o", label=k, clip_on=False)
    axes[1].set(title="validation metrics", xlabel="epoch")
    if values and 0 <= min(values) and max(values) <= 1:  # fractions (accuracy, mAP, IoU): the axis ends at 1
        axes[1].set_ylim(max(0.0, min(values) - 0.05), 1.0)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return save(fig, path)


def step_curves(history: list[dict], keys: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Each of ``keys`` against ``step`` on a log scale, one panel each."""
    fig, axes = subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    steps = [h["step"] for h in history]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [max(h[k], 1e-12) for h in history])
        ax.set(title=k, xlabel="step", yscale="log")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalised colours, raw counts written in the cells."""
    cm = np.asarray(cm)
    n = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels([short(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels([short(c) for c in classes], fontsize=8)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save(fig, path)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, *,
               colors: Sequence[str] | None = None, cols: int = 6, title: str = "") -> Path:
    """A grid of RGB uint8 images with a caption each."""
    rows = max(1, -(-len(images) // cols))
    # each row as tall as its tallest image at the column width, plus its captions' lines
    aspect = max((img.shape[0] / max(img.shape[1], 1) for img in images), default=1.0)
    lines = max((len(str(t).splitlines()) or 1 for t in titles), default=1)
    fig, axes = subplots(rows, cols, figsize=(2.2 * cols, (2.1 * aspect + 0.16 * lines + 0.15) * rows + (0.4 if title else 0)),
                         squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, text) in enumerate(zip(images, titles)):
        ax = axes.flat[k]
        ax.imshow(img)
        ax.set_title("\n".join(short(line, 40) for line in str(text).splitlines()), fontsize=7,
                     color=(colors[k] if colors else "black"))
    if title:
        fig.suptitle(title)
    return save(fig, path)


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def pr_curves(recall: np.ndarray, precision: np.ndarray, classes: Sequence[str], ap50: Sequence[float],
              path: str | Path) -> Path:
    """Precision–recall at IoU 0.5, one curve per class and their mean."""
    fig, ax = subplots(figsize=(6, 5))
    for curve, name, ap in zip(precision, classes, ap50):
        ax.plot(recall, curve, lw=1, label=f"{short(name)} {ap:.3f}")
    if len(classes) > 1:
        ax.plot(recall, np.mean(precision, 0), lw=2.5, color="black", label=f"all classes {np.mean(ap50):.3f} mAP50")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision–recall (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save(fig, path)


def bars(names: Sequence[str], values: Sequence[float], path: str | Path, *, ylabel: str, title: str = "") -> Path:
    """One bar per name, its value written on it (per-class AP / IoU)."""
    fig, ax = subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 4))
    drawn = ax.bar(range(len(names)), values, color="tab:blue")
    for bar, v in zip(drawn, values):
        ax.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(range(len(names)), [short(n) for n in names], rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set(ylabel=ylabel, ylim=(0, 1.05), title=title)
    return save(fig, path)


def label_offsets(ax, points: Sequence[tuple[float, float]], *, width: float = 75, height: float = 10) -> list[float]:
    """Vertical offsets (points) for labels beside ``points`` so none covers another: from
    the top point down, a label that would overlap one already placed moves below it.
    ``width`` and ``height`` are a label's size in points (18 characters of 8-point text)."""
    ax.autoscale_view()
    scale = 72 / ax.figure.dpi  # display pixels → points
    placed: list[tuple[float, float]] = []
    offsets = [4.0] * len(points)
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        px, py = (v * scale for v in ax.transData.transform(points[i]))
        dy = 4.0
        while any(abs(px - qx) < width and abs(py + dy - qy) < height for qx, qy in placed):
            dy -= height
        placed.append((px, py + dy))
        offsets[i] = dy
    return offsets


def pareto(ax, points: Sequence[tuple[float, float, str, str]], *, higher_y: bool, higher_x: bool,
           front: bool = True) -> None:
    """``points`` (x, y, label, colour) on ``ax``, labelled, and with ``front`` the Pareto front
    (the points no other beats on both axes) joined by a dashed line."""
    for x, y, name, colour in points:
        ax.scatter(x, y, s=40, color=colour)
    for (x, y, name, _), dy in zip(points, label_offsets(ax, [(p[0], p[1]) for p in points])):
        ax.annotate(short(name, 18), (x, y), textcoords="offset points", xytext=(4, dy), fontsize=8)
    kept, best_y = [], None  # best x first; kept when better on y than everything before it
    for x, y, *_ in sorted(points, key=lambda p: -p[0] if higher_x else p[0]):
        if best_y is None or (y > best_y if higher_y else y < best_y):
            kept.append((x, y))
            best_y = y
    if front and len(kept) > 1:
        ax.plot(*zip(*sorted(kept)), color="gray", ls="--", lw=1, label="Pareto front")
        ax.legend(fontsize=7)

