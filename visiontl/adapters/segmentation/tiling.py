"""Inference on images of any size: pad to the model's stride, and above ``tile`` pixels
slide an overlapping window, blending the tiles' logits with a window that trusts tile
centres more than tile borders (where a CNN sees less context)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (N, C, H, W) on the bottom/right to multiples of ``multiple`` (reflection where
    the image is large enough, else zeros)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "constant"
        x = F.pad(x.float() if mode == "reflect" else x, (0, pw, 0, ph), mode=mode).to(x.dtype)
    return x


def starts(length: int, tile: int, step: int) -> list[int]:
    """Window offsets covering ``length``: every ``step``, the last one flush with the end."""
    if length <= tile:
        return [0]
    out = list(range(0, length - tile, step))
    return out + [length - tile]


def blend_window(tile: int, device=None) -> torch.Tensor:
    """(tile, tile) weights: a raised sine, 1 in the centre, small but > 0 at the borders."""
    ramp = torch.sin(math.pi * (torch.arange(tile, device=device) + 0.5) / tile).clamp_min(1e-3)
    return ramp[:, None] * ramp[None, :]


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, *, tile: int = 512, overlap: float = 0.25, batch_size: int = 8,
                   stride: int = 32) -> torch.Tensor:
    """Logits (N, C, H, W) for images (N, 3, H, W) of any size.

    Images up to ``tile`` on both sides go through the model whole (padded to ``stride``);
    larger ones as ``tile``² windows ``tile · (1 − overlap)`` apart, batched ``batch_size``
    at a time.
    """
    h, w = images.shape[-2:]
    tile = max(stride, tile - tile % stride)
    if h <= tile and w <= tile:
        return model(pad_to_multiple(images, stride))[..., :h, :w].float()
    x = pad_to_multiple(images, stride)
    if x.shape[-2] < tile or x.shape[-1] < tile:  # one side shorter than a tile: pad it up to one
        x = F.pad(x, (0, max(0, tile - x.shape[-1]), 0, max(0, tile - x.shape[-2])))
    H, W = x.shape[-2:]
    step = max(stride, int(tile * (1 - overlap)))
    boxes = [(y, x0) for y in starts(H, tile, step) for x0 in starts(W, tile, step)]
    window = blend_window(tile, x.device)
    out, norm = None, torch.zeros(H, W, device=x.device)
    for k in range(0, len(boxes), max(1, batch_size // len(x))):
        chunk = boxes[k:k + max(1, batch_size // len(x))]
        crops = torch.cat([x[..., y:y + tile, x0:x0 + tile] for y, x0 in chunk])
        logits = model(crops).float()
        if out is None:
            out = torch.zeros(len(x), logits.shape[1], H, W, device=x.device)
        for j, (y, x0) in enumerate(chunk):
            out[..., y:y + tile, x0:x0 + tile] += logits[j * len(x):(j + 1) * len(x)] * window
            norm[y:y + tile, x0:x0 + tile] += window
    return (out / norm)[..., :h, :w]
