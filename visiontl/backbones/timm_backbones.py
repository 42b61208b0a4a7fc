"""``timm:<name>``: any timm model with ``features_only`` support, as a visiontl Backbone."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from .base import Backbone, FeatureInfo, Preprocessing, block_groups
from .weights import WeightsUnavailable, network_allowed


def available() -> bool:
    try:
        import timm  # noqa: F401  (is it installed?)
    except ImportError:
        return False
    return True


class TimmBackbone(Backbone):
    """A timm ``features_only`` network behind the Backbone contract. timm runs its own
    forward (some feature classes are not plain sequences); layer groups are the runs of
    modules that end at each feature tap."""

    def __init__(self, net: nn.Module, feature_info: list[FeatureInfo], *, preprocessing: Preprocessing,
                 name: str) -> None:
        super().__init__([], [], preprocessing=preprocessing, name=name)
        self.net = net
        self.feature_info = feature_info
        self._groups: list[nn.Module] | None = None

    def forward_features(self, x):
        return list(self.net(x))

    def layer_groups(self) -> list[nn.Module]:
        """timm's own fine-grained grouping (the model's ``group_matcher``, what timm's layer
        decay uses: stem, then one group per block), mapped onto the ``features_only``
        network; where a model has none or it does not cover every parameter, one group per
        module that ends at a feature tap (``block_groups``)."""
        if self._groups is None:  # building timm's matcher takes a model: once
            self._groups = _timm_groups(self.net, self.name.split(":", 1)[1]) or []
        if self._groups:
            return list(self._groups)
        taps = [info["module"].replace(".", "_") for info in self.net.feature_info.get_dicts()]
        return block_groups([module for _, module in _leaves(self.net, taps)])


def _timm_groups(net: nn.Module, model_name: str) -> list[nn.Module] | None:
    import timm
    import torch
    from timm.models import group_modules

    try:
        with torch.device("meta"):  # the full model, for its matcher and names only: no memory, no weights
            full = timm.create_model(model_name)
        by_group = group_modules(full, full.group_matcher(coarse=False))
    except (AttributeError, NotImplementedError, TypeError):
        return None
    modules = dict(net.named_modules())

    def find(name: str) -> nn.Module | None:  # features_only flattens top-level sequences: stages.0 → stages_0
        found = modules.get(name)
        return found if found is not None else modules.get(name.replace(".", "_", 1))

    groups = []
    for _, names in sorted(by_group.items()):
        found = [m for m in map(find, names) if m is not None]
        if found:
            groups.append(nn.ModuleList(found))
    covered = {id(p) for g in groups for p in g.parameters()}
    if not groups or any(id(p) not in covered for p in net.parameters()):
        return None
    return groups


def _leaves(net: nn.Module, taps: list[str]):
    """Top-level modules in order, opened one level where a tap lies inside (blocks → blocks.0 …)."""
    for name, child in net.named_children():
        if any(t.startswith(name.replace(".", "_") + "_") for t in taps):
            for sub, grandchild in child.named_children():
                yield f"{name}.{sub}", grandchild
        else:
            yield name, child


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
    elif weights != "none":  # a local file of the full timm model (state dict or safetensors)
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: weights file not found")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
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

    cfg = net.pretrained_cfg or {}
    pre = Preprocessing(mean=tuple(cfg.get("mean", Preprocessing().mean)), std=tuple(cfg.get("std", Preprocessing().std)))
    info = [FeatureInfo(c, r, f"stage{i}") for i, (c, r) in enumerate(zip(net.feature_info.channels(), net.feature_info.reduction()))]
    bb = TimmBackbone(net, info, preprocessing=pre, name=f"timm:{model_name}")
    bb.weights_source = {"imagenet": "timm", "none": "none"}.get(weights, f"file:{weights}")
    return bb
