"""Class activation maps: where a classifier looks for the class it names. The maps come
from the maintained ``grad-cam`` package (pytorch-grad-cam), which hooks the backbone's last
stage; visiontl chooses the layer, the targets and draws the result.

Methods: ``gradcam`` (Selvaraju et al. 2017: the stage's channels weighted by the mean
gradient of the class's evidence, :class:`ClassEvidence`), ``gradcam++`` (Chattopadhay et al. 2018: higher-order weights,
better with several instances of the class), ``layercam`` (Jiang et al. 2021: per-position
weights, finer maps) and ``eigencam`` (the first principal component of the stage's
activations; no gradient and no class: what the backbone finds salient).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

class ClassEvidence:
    """The target the gradient methods explain: the class's log-probability, i.e. its score
    against the other classes' (``log_softmax``). The raw score would also light up what
    raises every class alike (texture present in all images); this shows what makes the
    class win. Shape: (C,) logits of one image → a scalar."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float(), dim=-1)[..., self.index]


METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM"}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"explain method (eval.worst_cams) {method!r}: choose one of {', '.join(METHODS)}")
    return method


def activation_maps(model: nn.Module, layer: nn.Module, images: torch.Tensor, classes: list[int],
                    method: str = "gradcam") -> np.ndarray:
    """(N, H, W) maps in [0, 1] at the input's size, one per image for class ``classes[i]``.
    ``images``: (N, 3, H, W) uint8 or float in [0, 1], as the model takes them."""
    try:
        import pytorch_grad_cam
    except ImportError:
        raise ImportError("explanations need the grad-cam package: pip install 'visiontl[explain]' "
                          "(or pip install grad-cam)") from None
    cam_class = getattr(pytorch_grad_cam, METHODS[check_method(method)])
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    was_training = model.training
    try:
        with torch.enable_grad(), cam_class(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=x.requires_grad_(True), targets=[ClassEvidence(int(k)) for k in classes])
    finally:
        model.train(was_training)
    return np.nan_to_num(np.asarray(maps, np.float32)).clip(0, 1)
