"""Packages whose names load on first use: importing ``visiontl.engine`` (say, for its
config dataclasses) does not import torch until something that needs it is asked for."""
from __future__ import annotations

import importlib
from typing import Callable


def exports(package: str, where: dict[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: name → the submodule (``.name``) defining it."""
    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(where[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
