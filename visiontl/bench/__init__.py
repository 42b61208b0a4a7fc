"""``visiontl bench``: backbones benchmarked across the four tasks at one budget — the
task's metric from pretrained weights and from random init, speed, memory, size.

``bench(backbones=[...], quick=True)``; the command line is ``visiontl bench``.
"""
from .._lazy import exports

_WHERE = {"bench": ".run", "Plan": ".plan", "TASKS": ".plan"}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
