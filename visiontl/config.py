"""Typed configs: dataclass defaults ← YAML file ← dotted ``key=value`` overrides.

Unknown keys and wrong types are errors that name the key. The resolved config is written
to the run directory as YAML and can be re-run as is.

Example::

    cfg = load_config(ClassifyConfig, "configs/classify/flowers.yaml", ["optim.lr=3e-4"])
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .files import write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key (and the file)."""


class Raw(str):
    """A command-line value, parsed only once the field's type is known (so that
    ``train.amp=off`` stays the string 'off' and ``optim.lr=3e-4`` becomes a float)."""


def _parse(raw: str) -> Any:
    value = yaml.safe_load(raw) if raw != "" else ""
    return float(raw) if isinstance(value, str) and _looks_float(raw) else value


def _wants_str(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_wants_str(a) for a in typing.get_args(tp)) and not any(
            typing.get_origin(a) in (list, tuple) for a in typing.get_args(tp))
    return False


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    union = origin in (typing.Union, types.UnionType)
    null = isinstance(value, Raw) and value.lower() in ("null", "none", "~")
    if isinstance(value, Raw) and not (union and not null):  # a union's members parse it each their way
        value = str(value) if _wants_str(tp) and not null else _parse(value)
    if isinstance(value, bool) and _wants_str(tp):  # YAML 1.1 reads off/on/no/yes as booleans
        value = {False: "off", True: "on"}[value] if tp is not str else str(value).lower()
    if tp is Any:
        return value
    if union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{key}: {value!r} is not valid (" + "; or ".join(e.split(": ", 1)[-1] for e in errors) + ")")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, Path):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type[T], data: Any, prefix: str = "", base: Any = None) -> T:
    """Build dataclass ``cls`` from a nested dict, checking every key and type. Keys the dict
    leaves out keep their values in ``base`` (default: ``cls()``), section by section, so a
    task's own defaults for a shared section (segmentation's ``train.min_steps_per_epoch: 8``)
    survive an override of another key of that section."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else ""
            raise ConfigError(f"unknown key {dotted!r}; {hint}valid keys here: {', '.join(sorted(names))}")
        section = getattr(base, key)
        if dataclasses.is_dataclass(hints[key]) and isinstance(section, hints[key]):
            kwargs[key] = from_dict(hints[key], value, dotted, section)
        else:
            kwargs[key] = _check(value, hints[key], dotted)
    return dataclasses.replace(base, **kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        value = Raw(raw)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def _looks_float(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Every key whose section declares its allowed values (a ``RANGES`` class attribute of
    intervals such as ``"[0, 1)"``) holds one, or a ConfigError naming the key and the range."""
    ranges = getattr(type(cfg), "RANGES", {})
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif f.name in ranges and not _in_interval(value, ranges[f.name]):
            raise ConfigError(f"{prefix}{f.name}={value}: must be in {ranges[f.name]}")


def _in_interval(value: float, interval: str) -> bool:
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below  # NaN: neither


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _fix_floats(data)


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (a tag that would build a Python
    object is refused by the safe loader; say so)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if "constructor for the tag" in problem:
        return f"refused: {problem.replace('could not determine a constructor for the tag', 'the tag')}{where} " \
               "builds an object; only plain YAML (text, numbers, lists, mappings) is read"
    return f"not valid YAML: {problem}{where}"


def _fix_floats(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _fix_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_floats(v) for v in node]
    if isinstance(node, str) and _looks_float(node) and any(c in node.lower() for c in "e."):
        return float(node)
    return node


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls``, then the YAML file, then the overrides."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, list(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def save_config(cfg: Any, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` for every leaf field of the config dataclass
    ``cls``, nested sections as dotted keys; the description is the field's trailing comment
    in the source (what ``visiontl train TASK --help`` lists). Defaults are read from an
    instance, so a task's own defaults for a shared section (segmentation's
    ``finetune.strategy: full``) are the ones shown."""
    rows = []
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    defaults = cls() if defaults is None else defaults
    for f in dataclasses.fields(cls):
        tp, default = hints[f.name], getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.", default)
            continue
        interval = getattr(cls, "RANGES", {}).get(f.name)
        rows.append((prefix + f.name, _type_name(tp) + (f" in {interval}" if interval else ""),
                     yaml.safe_dump(default, default_flow_style=True).strip()
                     .removesuffix("...").strip(), comments.get(f.name, "")))
    return rows


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args if a is not type(None)) + (" | null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    return getattr(tp, "__name__", str(tp))


def _field_comments(cls: type) -> dict[str, str]:
    """Field name → the ``# comment`` on its line(s), read from the class's source with
    ``ast`` and ``tokenize`` (nothing is executed)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    fields = {line: node.target.id for node in ast.parse(source).body[0].body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              for line in range(node.lineno, node.end_lineno + 1)}  # the comment may end any line of it
    return {fields[tok.start[0]]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT and tok.start[0] in fields}
