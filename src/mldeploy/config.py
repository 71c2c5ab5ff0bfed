"""Configuration: ``-C key=value`` parsing, config files, and strict typed dataclass configs.

A target declares its configuration as a (frozen) dataclass; the field defaults are the one source
of truth for defaults. :func:`build_config` turns a mapping (CLI strings, JSON/YAML/TOML values or
Python objects) into that dataclass and refuses anything it does not understand::

    >>> build_config(MyConfig, {"instance_cout": "2"})
    ConfigError: unknown config key 'instance_cout' (did you mean 'instance_count'?)

Per-field constraints live in ``dataclasses.field(metadata=...)``: ``help``, ``min``, ``max``,
``choices``, ``step``. Cross-field checks go in the dataclass's ``validate()`` method, which
:func:`build_config` calls last.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mldeploy.errors import ConfigError

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# -- -C key=value -------------------------------------------------------------------------------


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["a=1", "b.c=x"]`` into ``{"a": "1", "b": {"c": "x"}}``. Values stay strings (the
    typed conversion happens in :func:`build_config`); dotted keys build nested mappings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"cannot read config option {item!r}",
                hint="write it as -C key=value, e.g. -C instance_count=2",
            )
        _set_dotted(out, key, value)
    return out


def _set_dotted(out: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = out
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {part!r} is given both as a value and as a section")
        node = child
    if parts[-1] in node and isinstance(node[parts[-1]], dict) and not isinstance(value, dict):
        raise ConfigError(f"config key {key!r} is given both as a value and as a section")
    node[parts[-1]] = value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON, YAML or TOML config file (by suffix) into a mapping."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(p)!r}: {exc.strerror or exc}",
            hint="check the path given to --config-file",
        ) from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise ConfigError(
                f"config file {str(p)!r} has an unknown format",
                hint="use a .json, .yaml, .yml or .toml file",
            )
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' own errors carry line numbers, not tracebacks
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"config file {str(p)!r} is not valid {suffix[1:].upper()}: {first}",
            hint="fix the file's syntax",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping of keys to values",
            hint="write key: value pairs at the top level",
        )
    return data


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge mappings; later layers win (file, then ``-C`` options, then API arguments)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            elif isinstance(value, Mapping):
                out[key] = merge(value)
            else:
                out[key] = value
    return out


# -- typed configs ------------------------------------------------------------------------------


def config_keys(cls: type) -> list[str]:
    """The valid top-level keys of a config dataclass."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def nearest_key(key: str, valid: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def build_config(cls: type[T], data: Mapping[str, Any] | T | None = None, *, _path: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``, converting strings and checking every key."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        _validate(data)
        return data
    if not isinstance(data, Mapping):
        data = _maybe_json(data, _path or "config")
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"config {_path or 'value'} must be a mapping of keys to values",
                hint=f"valid keys: {', '.join(config_keys(cls))}",
            )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        dotted = f"{_path}.{key}" if _path else str(key)
        if key not in fields:
            near = nearest_key(str(key), fields)
            prefix = f"{_path}." if _path else ""
            raise ConfigError(
                f"unknown config key {dotted!r}"
                + (f" (did you mean {prefix + near!r}?)" if near else ""),
                hint=f"valid keys{' under ' + _path if _path else ''}: {', '.join(sorted(fields))}",
            )
        kwargs[key] = convert(raw, hints[key], dotted, fields[key].metadata)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"config {_path or cls.__name__}: {exc}") from None
    _validate(obj)
    return obj


def _validate(obj: Any) -> None:
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()


def convert(raw: Any, tp: Any, key: str, meta: Mapping[str, Any] | None = None) -> Any:
    """Convert ``raw`` to ``tp`` (str, int, float, bool, Enum, dataclass, list, dict, Optional),
    then check the field's ``min``/``max``/``step``/``choices`` metadata."""
    value = _convert(raw, tp, key)
    meta = meta or {}
    if value is not None:
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(
                f"config {key}={value!r} is not one of {', '.join(map(str, meta['choices']))}"
            )
        if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
            lo, hi = meta.get("min", "-inf"), meta.get("max", "inf")
            raise ConfigError(f"config {key}={value} is out of range", hint=f"use {lo}..{hi}")
        if "step" in meta and value % meta["step"]:
            raise ConfigError(
                f"config {key}={value} is not a multiple of {meta['step']}",
                hint=f"use one of {meta.get('min', meta['step'])}, "
                f"{meta.get('min', meta['step']) + meta['step']}, ... {meta.get('max', '')}",
            )
    return value


def _convert(raw: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
            if len(non_none) < len(args):
                return None
        if len(non_none) == 1:
            return _convert(raw, non_none[0], key)
        for alt in non_none:
            try:
                return _convert(raw, alt, key)
            except ConfigError:
                continue
        raise ConfigError(f"config {key}={raw!r} has the wrong type")
    if tp is Any:
        return raw
    if tp is bool:
        return _to_bool(raw, key)
    if tp is int or tp is float:
        return _to_number(raw, tp, key)
    if tp is str:
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"config {key} must be a string, not {type(raw).__name__}")
        return str(raw)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        valid = [m.value for m in tp]
        for member in tp:
            if str(raw).lower() in (str(member.value).lower(), member.name.lower()):
                return member
        near = nearest_key(str(raw), map(str, valid))
        raise ConfigError(
            f"config {key}={raw!r} is not valid" + (f" (did you mean {near!r}?)" if near else ""),
            hint=f"use one of {', '.join(map(str, valid))}",
        )
    if dataclasses.is_dataclass(tp):
        return build_config(tp, raw, _path=key)  # type: ignore[arg-type]
    if origin in (list, tuple, Iterable) or tp in (list, tuple):
        value = _maybe_json(raw, key)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config {key} must be a list", hint='e.g. a,b or ["a", "b"]')
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        value = _maybe_json(raw, key)
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"config {key} must be a mapping", hint=f'e.g. -C {key}=\'{{"k": "v"}}\''
            )
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"config {key}: unsupported type {tp!r}")  # a bug in a config class


def _maybe_json(raw: Any, key: str) -> Any:
    if isinstance(raw, str) and raw.strip()[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"config {key} is not valid JSON: {exc.msg} at character {exc.pos}",
                hint="quote the value for your shell, e.g. -C 'key={\"a\": 1}'",
            ) from None
    return raw


def _to_bool(raw: Any, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"config {key}={raw!r} is not a boolean",
                      hint="use true/false, 1/0, yes/no or on/off")


def _to_number(raw: Any, tp: type, key: str) -> Any:
    if isinstance(raw, bool):
        raise ConfigError(f"config {key} must be a number, not a boolean")
    try:
        if tp is int:
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            return int(str(raw).strip())
        return float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
    except (TypeError, ValueError):
        kind = "a whole number" if tp is int else "a number"
        raise ConfigError(f"config {key}={raw!r} is not {kind}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able data (enums as their values)."""

    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def describe_config(cls: type, *, _prefix: str = "") -> list[dict[str, Any]]:
    """Every ``-C`` key of a config class, sections flattened to dotted keys
    (``serverless_config.memory_size_in_mb``): its type, default, help and constraints
    (``choices``, ``min``, ``max``, ``step``), for ``mldeploy config -t TARGET`` and the docs."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{_prefix}{f.name}"
        tp = hints[f.name]
        section = _section(tp)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if section is not None:
            out.extend(describe_config(section, _prefix=f"{key}."))
            continue
        entry: dict[str, Any] = {
            "key": key,
            "type": type_name(tp),
            "default": to_dict(default),
            "help": f.metadata.get("help", ""),
        }
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            entry["required"] = True
        for name in ("choices", "min", "max", "step"):
            if name in f.metadata:
                entry[name] = to_dict(list(f.metadata[name]) if name == "choices"
                                      else f.metadata[name])
        out.append(entry)
    return out


def _section(tp: Any) -> type | None:
    """The dataclass behind a section field (``X`` or ``X | None``), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = non_none[0] if len(non_none) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def type_name(tp: Any) -> str:
    """A config type as the user writes it: ``int | None``, ``bool``, ``list[str]``, ``one of
    flask, mlserver`` (an enum: its values)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp))


__all__ = [
    "build_config",
    "config_keys",
    "convert",
    "describe_config",
    "load_config_file",
    "merge",
    "nearest_key",
    "parse_assignments",
    "to_dict",
    "type_name",
]
