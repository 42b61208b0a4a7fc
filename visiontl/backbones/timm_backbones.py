"""``timm:<name>``: any timm model with ``features_only`` support, as a visiontl Backbone."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from .base import Backbone, FeatureInfo, Preprocessing
from .weights import WeightsUnavailable, load_state_dict, network_allowed


def available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


class _Stage(nn.Module):
    """A run of a timm FeatureListNet's top-level modules, ending at one feature tap."""

    def __init__(self, modules: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.names = [n.replace(".", "_") for n, _ in modules]
        for n, m in zip(self.names, (m for _, m in modules)):
            self.add_module(n, m)

    def forward(self, x):
        for n in self.names:
            x = getattr(self, n)(x)
        return x


@contextmanager
def _hub_offline(active: bool):
    """Make huggingface_hub (timm's weight source) answer from its cache only: it reads
    HF_HUB_OFFLINE once at import, so the constant is switched too."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def build(model_name: str, weights: str = "imagenet") -> Backbone:
    import timm

    if model_name not in timm.list_models():
        raise KeyError(f"timm has no model {model_name!r} (see timm.list_models())")
    kwargs: dict = {"features_only": True}
    if weights == "imagenet":
        kwargs["pretrained"] = True
    elif weights != "none":
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: weights file not found")
    try:
        with _hub_offline(weights == "imagenet" and not network_allowed("https://huggingface.co")):
            net = timm.create_model(model_name, **kwargs)
    except Exception as e:
        if weights == "imagenet":
            raise WeightsUnavailable(
                f"timm:{model_name}: pretrained weights could not be loaded ({type(e).__name__}). "
                "Run once with network access so timm caches them, or pass weights=/path/to/file, "
                "or weights=none."
            ) from e
        raise
    if weights not in ("imagenet", "none"):
        full = timm.create_model(model_name, pretrained=False)
        full.load_state_dict(load_state_dict(weights), strict=False)
        net.load_state_dict({k: v for k, v in full.state_dict().items() if k in net.state_dict()}, strict=True)

    taps = [info["module"] for info in net.feature_info.get_dicts()]
    stages, run = [], []
    for name, module in net.named_children():
        run.append((name, module))
        if name in taps:
            stages.append(_Stage(run))
            run = []
    cfg = net.pretrained_cfg or {}
    pre = Preprocessing(mean=tuple(cfg.get("mean", Preprocessing().mean)), std=tuple(cfg.get("std", Preprocessing().std)))
    info = [FeatureInfo(c, r, f"stage{i}") for i, (c, r) in enumerate(zip(net.feature_info.channels(), net.feature_info.reduction()))]
    bb = Backbone(stages, info, preprocessing=pre, name=f"timm:{model_name}")
    bb.weights_source = {"imagenet": "timm", "none": "none"}.get(weights, f"file:{weights}")
    return bb
