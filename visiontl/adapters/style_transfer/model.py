"""The fast style model's head: Johnson et al.'s (2016) image transformation network, with
instance norm (Ulyanov et al.), reflection padding and upsample-then-convolve (no
checkerboard artefacts). Fully convolutional: any image size in, the same size out."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, act: bool = True) -> None:
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(c_in, c_out, k, stride),
                         nn.InstanceNorm2d(c_out, affine=True), *([nn.ReLU()] if act else []))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvNormAct(c, c, 3), ConvNormAct(c, c, 3, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest ×2, then a convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvNormAct(c_in, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformerNet(nn.Module):
    """RGB [0, 1] (N, 3, H, W) → stylised RGB [0, 1], same size (H, W padded to multiples of
    4 inside and cropped back).

    ``width`` is the first layer's channels (32 in the paper); ``blocks`` the residual blocks (5).
    The network predicts a change to the input, and its last layer starts at zero: an
    untrained model returns its input, so training starts from the content (as the
    optimisation mode does) instead of from grey. The sum is clamped to [0, 1], in training
    with a straight-through gradient: a sigmoid output left regions that saturated early
    stuck at black or white (no gradient; seen as blotches after a few hundred steps), and
    an unclamped one fed the loss network far-out-of-range images (loss spikes).
    """

    def __init__(self, width: int = 32, blocks: int = 5) -> None:
        super().__init__()
        w = width
        self.down = nn.Sequential(ConvNormAct(3, w, 9), ConvNormAct(w, 2 * w, 3, 2), ConvNormAct(2 * w, 4 * w, 3, 2))
        self.res = nn.Sequential(*[Residual(4 * w) for _ in range(blocks)])
        self.up = nn.Sequential(Upsample(4 * w, 2 * w), Upsample(2 * w, w))
        self.out = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        h, w = images.shape[-2:]
        x = F.pad(images, (0, -w % 4, 0, -h % 4), mode="reflect")
        out = images + self.out(self.up(self.res(self.down(x))))[..., :h, :w]
        # clamped values forward, the unclamped gradient backward (straight-through)
        return out + (out.clamp(0, 1) - out).detach() if self.training else out.clamp(0, 1)
