"""Native ultralytics models (``model.ultralytics=yolov8n.pt`` or ``=yolov8n.yaml``) trained
through visiontl's engine, data and strategies, so the YOLO zoo stays open to its users.

A ``.pt`` is a pickled model. It is loaded with ``weights_only=True`` and an allow-list:
module classes from ``ultralytics.nn`` and ``torch.nn`` and a few plain containers, nothing
callable. Only its architecture (``yaml``) and its weights are kept; the model is rebuilt
from the architecture for the training set's classes and the weights that fit are loaded.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel as UltralyticsDetectionModel

_PLAIN = {"collections.OrderedDict", "builtins.set", "types.SimpleNamespace",
          "ultralytics.utils.IterableSimpleNamespace", "torch.nn.parameter.Parameter"}


def _allowed(name: str):
    module, _, attr = name.rpartition(".")
    if name not in _PLAIN and not module.startswith(("ultralytics.nn.", "torch.nn.modules.")):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if name in _PLAIN or (isinstance(obj, type) and issubclass(obj, nn.Module)):
        return obj
    return None


def load_ultralytics_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(architecture dict, float32 state dict) of an ultralytics ``.pt``, loaded safely."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ultralytics checkpoint")
    allowed = {name: _allowed(name) for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)}
    refused = [name for name, obj in allowed.items() if obj is None]
    if refused:
        raise ValueError(f"{path}: refusing to load; it pickles {', '.join(refused)}, which are not model "
                         "modules (only ultralytics.nn / torch.nn module classes are allowed)")
    with torch.serialization.safe_globals(list(allowed.values())):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "yaml", None), dict):
        raise ValueError(f"{path}: not an ultralytics detection checkpoint (no model with a 'yaml' architecture)")
    return dict(model.yaml), {k: v.float() for k, v in model.state_dict().items()}


class _Groups(nn.Module):
    """The backbone part of an ultralytics model as layer groups (one per layer), for the
    fine-tuning strategies. Not registered as a child: the layers belong to the model."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.name, self.weights_source = "ultralytics", ""

    def layer_groups(self) -> list[nn.Module]:
        return list(self.layers)


class NativeDetector(nn.Module):
    """An ultralytics ``DetectionModel`` that takes visiontl's uint8 RGB batches."""

    def __init__(self, architecture: dict, num_classes: int, source: str) -> None:
        super().__init__()
        with _quiet():
            self.net = UltralyticsDetectionModel(cfg=dict(architecture), nc=num_classes, verbose=False)
        self.num_classes, self.source, self.architecture = num_classes, source, dict(architecture)
        n_backbone = len(architecture.get("backbone", [])) or len(self.net.model) - 1
        groups = _Groups(list(self.net.model[:n_backbone]))
        groups.weights_source = source
        object.__setattr__(self, "backbone", groups)  # a view, not a second owner of the layers

    @property
    def head(self) -> nn.Module:
        return self.net.model[-1]

    def forward(self, images: torch.Tensor):
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return self.net(x)

    def load_matching(self, state: dict[str, torch.Tensor]) -> int:
        """Load the checkpoint tensors whose names and shapes fit (a new class count changes
        the class branch); returns how many were loaded."""
        own = self.net.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.net.load_state_dict(fitting, strict=False)
        return len(fitting)


def build_native(spec: str, num_classes: int) -> NativeDetector:
    """From a ``.pt`` (architecture + pretrained weights) or a model ``.yaml`` (random init)."""
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file() and path.name != spec:
            raise FileNotFoundError(f"{path}: no such model yaml")
        # a bare name such as yolov8n.yaml is one of ultralytics' own architectures
        from ultralytics.nn.tasks import yaml_model_load

        return NativeDetector(yaml_model_load(str(path) if path.is_file() else spec), num_classes, f"{spec} (random init)")
    architecture, state = load_ultralytics_checkpoint(path)
    model = NativeDetector(architecture, num_classes, str(path))
    loaded = model.load_matching(state)
    print(f"{path}: {loaded}/{len(model.net.state_dict())} tensors loaded (architecture {architecture.get('yaml_file', '')})",
          file=sys.stderr)
    return model


class _quiet:
    """ultralytics prints its layer table on build; keep the user's terminal for ours."""

    def __enter__(self):
        from ultralytics.utils import LOGGER

        self.logger, self.level = LOGGER, LOGGER.level
        LOGGER.setLevel(40)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
