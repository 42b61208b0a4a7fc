"""Style-transfer losses as pure functions: Gram matrices, content, style, total variation.

Content and style terms are divided by the size of their target (mean square), so they are
the same whatever the scale of the backbone's features: a VGG19 fed Caffe's 0–255 pixels
and one fed ImageNet-normalised pixels give the same losses for the same images, and one
set of weights (``content_weight``, ``style_weight``) serves every backbone and weights file.
"""
from __future__ import annotations

from typing import Sequence

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations averaged over positions (Gatys et al. 2016).

    Shape: (N, C, H, W) → (N, C, C).
    """
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    if n == 1:  # one image (the optimisation mode): a 2-D matmul is ~1.3× faster on CPU than bmm
        return (f[0] @ f[0].T / (h * w))[None]
    return f @ f.transpose(1, 2) / (h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean squared error divided by the target's mean square (scale-free), per sample.

    Shape: (N, …), (N or 1, …) → (N,).
    """
    dims = tuple(range(1, x.dim()))
    return ((x - target) ** 2).mean(dims) / ((target ** 2).mean(dims) + eps)


def content_loss(features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the content layers of the relative feature error. Shape: → (N,)."""
    return sum(relative_mse(features[k].float(), targets[k].float()) for k in targets)


def layer_weights(layers: Sequence[str], weights: Sequence[float] = ()) -> dict[str, float]:
    """{style layer: weight}; no weights = equal shares summing to 1."""
    if weights and len(weights) != len(layers):
        raise ValueError(f"style_layer_weights has {len(weights)} entries for {len(layers)} style layers")
    return dict(zip(layers, weights or [1 / len(layers)] * len(layers)))


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor],
               weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum over the style layers of the relative Gram-matrix error. Shape: → (N,)."""
    return sum(weights[k] * relative_mse(gram(features[k]), target_grams[k]) for k in target_grams)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (smoothness prior).

    Shape: (N, C, H, W) → (N,).
    """
    dy = (images[:, :, 1:] - images[:, :, :-1]).abs().mean((1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean((1, 2, 3))
    return dx + dy
