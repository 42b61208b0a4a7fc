"""The backbone registry: ``create_backbone(name, weights=...)``, ``list_backbones()`` and
``register_backbone``. Each entry carries its builder and its known pretrained weights; a
name with a prefix (``timm:convnext_nano``) goes to the resolver registered for the prefix."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..registry import Registry
from . import timm_backbones, torchvision_backbones
from .base import Backbone, FeatureInfo, Preprocess, Preprocessing, freeze, set_bn_eval
from .weights import WeightsFile, WeightsUnavailable, availability, load_state_dict, resolve


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: ``builder(state_dict=None, preprocessing=None, source="")``
    returns a :class:`Backbone` (with the given weights loaded), ``weights`` are the files
    ``weights="imagenet"`` (or a tag) may resolve to, in order of preference; ``input_size``
    the side its weights were trained at, ``min_size`` the smallest side its stages take."""
    builder: Callable[..., Backbone]
    weights: tuple[WeightsFile, ...] = ()
    input_size: int = 224
    min_size: int = 32


@dataclass(frozen=True)
class Resolver:
    """Backbones named ``prefix:<model>`` built by another library: ``build(model, weights)``."""
    build: Callable[[str, str], Backbone]
    available: Callable[[], bool]
    install: str  # how to get the library
    weights: str  # where its weights come from, in words (for ``visiontl backbones``)


BACKBONES: Registry[BackboneEntry] = Registry("backbone")
RESOLVERS: Registry[Resolver] = Registry("backbone prefix")


def register_backbone(name: str, builder: Callable[..., Backbone], weights: Sequence[WeightsFile] = (), *,
                      input_size: int = 224, min_size: int = 32) -> None:
    """Add a backbone: ``create_backbone(name, …)``, ``list_backbones()`` and every task's
    ``model.backbone`` then know it (with ``weights="none"`` or a file if no weights are given)."""
    BACKBONES.register(name, BackboneEntry(builder, tuple(weights), input_size, min_size))


for _name, _spec in torchvision_backbones.SPECS.items():
    register_backbone(_name, torchvision_backbones.BUILDERS[_name], _spec.files, input_size=_spec.input_size,
                      min_size=_spec.min_size)
RESOLVERS.register("timm", Resolver(timm_backbones.build, timm_backbones.available, "pip install 'visiontl[timm]' (or timm)",
                                    "via timm (hub cache or download)"))


def check_backbone_name(name: str) -> None:
    """An unknown backbone name (or prefix) fails now, listing the valid ones."""
    if ":" in name:
        RESOLVERS.get(name.split(":", 1)[0])
    else:
        BACKBONES.get(name)


def input_sizes(name: str) -> tuple[int, int]:
    """(the side ``name``'s weights were trained at, the smallest side it takes); a
    ``prefix:`` backbone answers (224, 32)."""
    if ":" in name:
        return 224, 32
    entry = BACKBONES.get(name)
    return entry.input_size, entry.min_size


def check_input_size(name: str, size: int, key: str = "data.image_size") -> None:
    """An input side the backbone cannot take fails now, naming the key."""
    smallest = input_sizes(name)[1]
    if size < smallest:
        raise ValueError(f"{key}={size}: backbone {name!r} needs inputs of at least {smallest} px "
                         f"(its weights were trained at {input_sizes(name)[0]} px)")


def create_backbone(name: str, *, weights: str | Path = "imagenet") -> Backbone:
    """Build a registered backbone with its weights and matching preprocessing.

    Args:
        name: a registry key (``visiontl backbones`` lists them) or ``prefix:<model>``
            (``timm:convnext_nano``).
        weights: ``"imagenet"`` (offline first, see :mod:`visiontl.backbones.weights`),
            a named tag (e.g. ``"IMAGENET1K_V2"``, ``"caffe"``), a local file path, or ``"none"``.

    Example::

        bb = create_backbone("mobilenet_v2", weights="imagenet")
        feats = bb(torch.rand(1, 3, 224, 224))   # RGB in [0, 1]; 5 maps, strides 2…32
        bb.feature_info[-1].channels              # 1280
    """
    weights = str(weights)
    if ":" in name:
        prefix, model = name.split(":", 1)
        resolver = RESOLVERS.get(prefix)
        if not resolver.available():
            raise ImportError(f"{prefix}:<name> backbones need {prefix}: {resolver.install}")
        return resolver.build(model, weights)
    entry = BACKBONES.get(name)
    if weights.lower() == "none":
        bb = entry.builder()
        bb.weights_source = "none"
        return bb
    if Path(weights).suffix in {".pth", ".pt", ".bin", ".safetensors"} or Path(weights).exists():
        sd = load_state_dict(weights)
        if any(k.startswith("stages.") for k in sd):  # a saved visiontl Backbone
            bb = entry.builder()
            bb.load_state_dict(sd, strict=True)
        else:  # the builder's own layout (torchvision's for the built-in ones)
            bb = entry.builder(state_dict=sd, source=weights)
        bb.weights_source = f"file:{weights}"
        return bb
    sd, wf, source = resolve(name, entry.weights, weights)
    bb = entry.builder(state_dict=sd, preprocessing=wf.preprocessing, source=source)
    bb.weights_source = source
    return bb


def list_backbones() -> list[dict]:
    """Every registered backbone with the availability of its pretrained weights right now."""
    rows = []
    for name in BACKBONES:
        files = BACKBONES.get(name).weights
        rows.append({"name": name, "weights": availability(files), "tags": sorted({f.tag for f in files}),
                     "input_size": BACKBONES.get(name).input_size})
    for prefix in RESOLVERS:
        resolver = RESOLVERS.get(prefix)
        if resolver.available():
            rows.append({"name": f"{prefix}:<model>", "weights": resolver.weights, "tags": [], "input_size": 224})
    return rows


__all__ = [
    "BACKBONES", "RESOLVERS", "Backbone", "BackboneEntry", "FeatureInfo", "Preprocess", "Preprocessing", "Resolver",
    "WeightsUnavailable", "check_backbone_name", "check_input_size", "create_backbone", "freeze", "input_sizes",
    "list_backbones", "register_backbone",
    "set_bn_eval",
]
