"""Native ultralytics models (``model.ultralytics=yolov8n.pt`` or ``=yolov8n.yaml``) trained
through visiontl's engine, data and strategies, so the YOLO zoo stays open to its users.

A ``.pt`` is a pickled model. It is loaded with ``weights_only=True``, and every module
class it names (from ``ultralytics.nn`` or ``torch.nn``, nothing else) is stood in for by an
inert placeholder (:class:`_Unpickled`): no constructor, ``__setstate__`` or other code of
the real classes runs while the file is read, whatever the ultralytics version or its
settings, and a file that *calls* a class (a pickle REDUCE, as in
``DetectionModel(cfg=…)`` or ``AutoBackend("other.pt")``) is refused. Only its architecture
(``yaml``) and its weights are kept, read from the placeholders' state; the model is
rebuilt from the checked architecture for the training set's classes and the weights that
fit are loaded.

An architecture is data that ultralytics' model parser turns into code: it passes the
``activation`` string to ``eval`` and looks layer names up among its module's globals
(which include checkpoint loaders that unpickle without ``weights_only``). So every
architecture — from a ``.pt``, a model ``.yaml`` or a visiontl checkpoint — is checked by
:func:`check_architecture` before ultralytics sees it: plain data only, known keys, layer
names from an allow-list of detection layers, an activation of the form ``nn.Name(numbers)``.
"""
from __future__ import annotations

import copy
import pickle
import re
import sys
import types
from pathlib import Path

import torch
from torch import nn
from . import _ultralytics  # noqa: F401,I001  (before ultralytics: offline, its patches undone)
from ultralytics.nn.tasks import DetectionModel as UltralyticsDetectionModel

_CONTAINERS = {"builtins.set": set, "types.SimpleNamespace": types.SimpleNamespace,
               "ultralytics.utils.IterableSimpleNamespace": types.SimpleNamespace,  # args, as plain namespaces
               "torch.nn.parameter.Parameter": nn.Parameter}


class _Unpickled:
    """Stands for a module class a checkpoint names (``_name``). Unpickling creates it empty
    and fills its ``__dict__`` with the stored state; nothing of the real class runs, and a
    call of the class with arguments from the file is refused."""
    _name = ""

    def __new__(cls, *args):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        raise pickle.UnpicklingError(f"it calls {self._name}(…) while being read (a model file stores modules; "
                                     "it does not construct them)")

    def __setstate__(self, state) -> None:
        state, slots = state if type(state) is tuple and len(state) == 2 else (state, None)
        for part in (state, slots):
            if part is not None and type(part) is not dict:
                raise pickle.UnpicklingError(f"{self._name}: stored state is a {type(part).__name__}, not a dict")
            self.__dict__.update(part or {})


def _stand_in(name: str):
    """What unpickling gets for the global ``name``: a placeholder for a module class of
    ``ultralytics.nn`` / ``torch.nn`` (already imported: the file names no module to import),
    a plain container, or None (refused)."""
    if name in _CONTAINERS:
        return _CONTAINERS[name]
    module, _, attr = name.rpartition(".")
    if not module.startswith(("ultralytics.nn.", "torch.nn.modules.")) or module not in sys.modules:
        return None
    cls = vars(sys.modules[module]).get(attr)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return None
    return type(attr, (_Unpickled,), {"_name": name, "__module__": __name__})


# detection layers of the YOLO families (v3 … 26, RT-DETR backbones); no loaders, no text or
# torchvision models (those fetch weights), no heads other than detection
LAYERS = frozenset("""
    A2C2f AConv ADown AIFI Bottleneck BottleneckCSP C1 C2 C2PSA C2f C2fAttn C2fCIB C2fPSA C3 C3Ghost C3TR C3k2
    C3x CBFuse CBLinear Concat Conv ConvTranspose DWConv DWConvTranspose2d ELAN1 Focus GhostBottleneck GhostConv
    HGBlock HGStem PSA RepC3 RepConv RepNCSPELAN4 ResNetLayer SCDown SPP SPPELAN SPPF Detect v10Detect
    nn.BatchNorm2d nn.ConvTranspose2d nn.Identity nn.MaxPool2d nn.Upsample nn.ZeroPad2d""".split())
ACTIVATIONS = frozenset("ELU GELU Hardsigmoid Hardswish Identity LeakyReLU Mish PReLU ReLU ReLU6 SELU SiLU Sigmoid "
                        "Tanh".split())
_NUMBER = r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_ACTIVATION = re.compile(rf"(?:torch\.)?nn\.(\w+)\(\s*(?:(?:{_NUMBER}|\w+\s*=\s*(?:{_NUMBER}|True|False))"
                         rf"(?:\s*,\s*(?:{_NUMBER}|\w+\s*=\s*(?:{_NUMBER}|True|False)))*)?\s*\)")
_SCALARS = {"nc": int, "scale": str, "depth_multiple": (int, float), "width_multiple": (int, float), "ch": int,
            "channels": int, "reg_max": int, "end2end": bool, "yaml_file": str, "activation": str}


def _plain(value, depth: int = 0) -> bool:
    """Only str / numbers / bool / None, in lists and str-keyed dicts (no objects)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if depth < 6 and type(value) in (list, tuple):
        return all(_plain(v, depth + 1) for v in value)
    if depth < 6 and type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def check_architecture(architecture, source: str | Path) -> dict:
    """``architecture`` (an ultralytics model dict) if it is safe to hand to ultralytics'
    parser; else a ValueError naming ``source`` and the refused entry."""
    def refuse(what: str):
        raise ValueError(f"{source}: refusing the model architecture it holds: {what}")

    if type(architecture) is not dict:
        refuse(f"a {type(architecture).__name__}, not a dict")
    if not _plain(architecture):
        refuse("it holds objects, not plain data")
    unknown = sorted(set(architecture) - set(_SCALARS) - {"backbone", "head", "scales", "kpt_shape"})
    if unknown:
        refuse(f"unknown entries {unknown}")
    for key, kind in _SCALARS.items():
        if architecture.get(key) is not None and not isinstance(architecture[key], kind):
            refuse(f"{key}={architecture[key]!r} is not a {getattr(kind, '__name__', 'number')}")
    act = architecture.get("activation")
    if act:
        match = _ACTIVATION.fullmatch(act.strip())
        if not match or match.group(1) not in ACTIVATIONS:
            refuse(f"activation {act!r} (allowed: nn.<{'|'.join(sorted(ACTIVATIONS))}>(numbers))")
    scales = architecture.get("scales") or {}
    if type(scales) is not dict or not all(type(v) in (list, tuple) and len(v) == 3 and
                                           all(type(x) in (int, float) for x in v) for v in scales.values()):
        refuse("scales must map names to [depth, width, max_channels]")
    for part in ("backbone", "head"):
        layers = architecture.get(part)
        if type(layers) not in (list, tuple) or not layers:
            refuse(f"{part} is not a list of layers")
        for i, layer in enumerate(layers):
            if type(layer) not in (list, tuple) or len(layer) != 4:
                refuse(f"{part}[{i}] is not [from, repeats, module, args]")
            frm, n, name, args = layer
            if not (type(frm) is int or (type(frm) in (list, tuple) and all(type(f) is int for f in frm))):
                refuse(f"{part}[{i}]: from={frm!r} is not layer indices")
            if type(n) is not int or not 0 < n <= 64:
                refuse(f"{part}[{i}]: repeats={n!r}")
            if name not in LAYERS:
                refuse(f"{part}[{i}]: layer {name!r} is not an allowed detection layer")
            if type(args) not in (list, tuple):
                refuse(f"{part}[{i}]: args {args!r} is not a list")
    return architecture


def _attr(obj, name: str):
    """An attribute from an unpickled object's ``__dict__``: no descriptor, no method runs."""
    return vars(obj).get(name) if hasattr(obj, "__dict__") else None


def _tensors(module, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of an unpickled module, read from its ``_parameters``, ``_buffers``
    and ``_modules`` dicts (``state_dict()`` would run the file's hooks)."""
    out: dict[str, torch.Tensor] = {}
    if depth > 64:
        raise ValueError("modules nested too deep")
    non_persistent = _attr(module, "_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        for name, t in (_attr(module, key) or {}).items():
            if t is not None and not (key == "_buffers" and name in non_persistent):
                if not isinstance(t, torch.Tensor):
                    raise ValueError(f"{prefix}{name} is not a tensor")
                out[prefix + name] = t.detach().float() if t.is_floating_point() else t.detach()
    for name, child in (_attr(module, "_modules") or {}).items():
        if child is not None:
            out.update(_tensors(child, f"{prefix}{name}.", depth + 1))
    return out


def load_ultralytics_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(architecture dict, float32 state dict) of an ultralytics ``.pt``, loaded safely."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ultralytics checkpoint")
    names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    stand_ins = {name: _stand_in(name) for name in names}
    refused = [name for name, obj in stand_ins.items() if obj is None]
    if refused:
        raise ValueError(f"{path}: refusing to load; it pickles {', '.join(refused)}, which are not model "
                         "modules (only ultralytics.nn / torch.nn module classes are allowed)")
    try:
        with torch.serialization.safe_globals([(obj, name) for name, obj in stand_ins.items()]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = re.search(r"it calls .*?construct them\)", str(e))
        raise ValueError(f"{path}: refusing to load; {reason.group(0) if reason else str(e).splitlines()[0]}") from None
    model = (ckpt.get("ema") or ckpt.get("model")) if type(ckpt) is dict else ckpt
    if not isinstance(model, _Unpickled) or type(_attr(model, "yaml")) is not dict:
        raise ValueError(f"{path}: not an ultralytics detection checkpoint (no model with a 'yaml' architecture)")
    architecture = check_architecture(dict(_attr(model, "yaml")), path)
    try:
        return architecture, _tensors(model)
    except ValueError as e:
        raise ValueError(f"{path}: not an ultralytics detection checkpoint ({e})") from None


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
        check_architecture(architecture, source)
        with _quiet():
            self.net = UltralyticsDetectionModel(cfg=copy.deepcopy(architecture), nc=num_classes, verbose=False)
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

        architecture = yaml_model_load(str(path) if path.is_file() else spec)  # yaml.safe_load inside
        return NativeDetector(check_architecture(architecture, spec), num_classes, f"{spec} (random init)")
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
