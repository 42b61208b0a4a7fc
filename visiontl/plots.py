"""Plots every task shares: curves from ``metrics.csv``, confusion matrices, image grids."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(history: list[dict], path: str | Path) -> Path:
    """One panel for losses, one for every other validation metric, against epochs."""
    epochs = [h["epoch"] for h in history]
    losses = [k for k in history[0] if k.endswith("loss")]
    others = [k for k in history[0] if k.startswith("val/") and not k.endswith("loss")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in losses:
        axes[0].plot(epochs, [h.get(k, np.nan) for h in history], marker="o", label=k)
    axes[0].set(title="loss", xlabel="epoch")
    for k in others:
        axes[1].plot(epochs, [h.get(k, np.nan) for h in history], marker="o", label=k)
    axes[1].set(title="validation metrics", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path)


def confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalised colours, raw counts written in the cells."""
    cm = np.asarray(cm)
    n = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(classes, fontsize=8)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, *,
               colors: Sequence[str] | None = None, cols: int = 6, title: str = "") -> Path:
    """A grid of RGB uint8 images with a caption each."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, text) in enumerate(zip(images, titles)):
        ax = axes.flat[k]
        ax.imshow(img)
        ax.set_title(text, fontsize=7, color=(colors[k] if colors else "black"))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pr_curves(recall: np.ndarray, precision: np.ndarray, classes: Sequence[str], ap50: Sequence[float],
              path: str | Path) -> Path:
    """Precision–recall at IoU 0.5, one curve per class and their mean."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for curve, name, ap in zip(precision, classes, ap50):
        ax.plot(recall, curve, lw=1, label=f"{name} {ap:.3f}")
    if len(classes) > 1:
        ax.plot(recall, np.mean(precision, 0), lw=2.5, color="black", label=f"all classes {np.mean(ap50):.3f} mAP50")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision–recall (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def bars(names: Sequence[str], values: Sequence[float], path: str | Path, *, ylabel: str, title: str = "") -> Path:
    """One bar per name, its value written on it (per-class AP / IoU)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 4))
    drawn = ax.bar(range(len(names)), values, color="tab:blue")
    for bar, v in zip(drawn, values):
        ax.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set(ylabel=ylabel, ylim=(0, 1.05), title=title)
    return _save(fig, path)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, *, labels: Sequence[str] = (), color=(255, 0, 0),
               width: int = 2) -> np.ndarray:
    """A copy of RGB ``image`` with xyxy ``boxes`` drawn, each captioned by its label."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(im)
    for k, box in enumerate(np.asarray(boxes).reshape(-1, 4).tolist()):
        draw.rectangle(box, outline=tuple(color), width=width)
        if k < len(labels) and labels[k]:
            draw.text((box[0] + 2, max(0, box[1] - 11)), labels[k], fill=tuple(color))
    return np.asarray(im)


def save_image(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return Path(path)
