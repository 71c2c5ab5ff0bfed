"""Request bodies checked against azure-ai-ml's own REST models (``arm_ml_service.models``).

Those TypeSpec models never raise when deserialising, so this walks their metadata instead: each
model's rest fields (JSON name, annotation, visibility), discriminators (``__mapping__``) and
required fields (non-Optional, writable). An unknown key, a wrong type, a missing required field
or an unknown discriminator value is an error that names the JSON path.
"""

from __future__ import annotations

import datetime
import enum
import functools
import typing
from typing import Any


class SchemaError(ValueError):
    pass


@functools.lru_cache(maxsize=1)
def _models() -> Any:
    from azure.ai.ml._restclient.arm_ml_service import models

    return models


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    from azure.ai.ml._restclient.arm_ml_service.models import _models as mod

    ns = dict(vars(mod))
    ns["_models"] = _models()
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        ann = klass.__dict__.get("__annotations__", {})
        for k, v in ann.items():
            if isinstance(v, str):
                try:
                    v = eval(v, ns)  # noqa: S307 - the SDK's own annotation strings
                except Exception:  # noqa: BLE001
                    v = Any
            out[k] = v
    return out


def model(name: str) -> type:
    return getattr(_models(), name)


def check(cls: type, data: Any, path: str = "$") -> None:
    """Raise :class:`SchemaError` unless ``data`` fits REST model ``cls``."""
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected an object for {cls.__name__}, got "
                          f"{type(data).__name__}")
    cls = _resolve(cls, data, path)
    fields = {rf._rest_name: (attr, rf) for attr, rf in _rest_fields(cls).items()}
    hints = _hints(cls)
    for key, value in data.items():
        if key not in fields:
            raise SchemaError(f"{path}.{key}: not a field of {cls.__name__}")
        attr, rf = fields[key]
        if value is None:
            continue
        _check_value(hints.get(attr, Any), value, f"{path}.{key}")
    for rest, (attr, rf) in fields.items():
        vis = rf._visibility or []
        writable = not vis or "create" in vis or "update" in vis
        if writable and rest not in data and not _optional(hints.get(attr, Any)) \
                and not rf._is_discriminator:
            raise SchemaError(f"{path}.{rest}: required by {cls.__name__}")


def _rest_fields(cls: type) -> dict[str, Any]:
    """The model's own rest fields. The SDK computes them in ``Model.__new__`` on a class's first
    instance (until then a subclass would show its parent's), so make one first."""
    cls.__new__(cls)
    return cls._attr_to_rest_field


def _resolve(cls: type, data: dict, path: str) -> type:
    seen: list[str] = []
    while getattr(cls, "__mapping__", None):
        _rest_fields(cls)
        disc = cls._get_discriminator(seen)
        if disc is None:
            break
        seen.append(disc._rest_name)
        value = data.get(disc._rest_name)
        if value is None:
            raise SchemaError(f"{path}.{disc._rest_name}: required discriminator of "
                              f"{cls.__name__}")
        sub = cls.__mapping__.get(value)
        if sub is None:
            raise SchemaError(f"{path}.{disc._rest_name}: {value!r} is not one of "
                              f"{sorted(cls.__mapping__)}")
        cls = sub
    return cls


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)


def _forward(tp: Any) -> Any:
    if isinstance(tp, typing.ForwardRef):
        from azure.ai.ml._restclient.arm_ml_service.models import _models as mod

        return eval(tp.__forward_arg__, {**vars(mod), "_models": _models()})  # noqa: S307
    return tp


def _check_value(tp: Any, value: Any, path: str) -> None:
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model

    tp = _forward(tp)
    origin = typing.get_origin(tp)
    args = tuple(_forward(a) for a in typing.get_args(tp))
    if tp is Any or tp is object:
        return
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if origin is typing.Union and str in args and enums:
        # an "extensible" enum (str or the enum): the service takes only the enum's values
        _check_value(enums[0], value, path)
        return
    if origin is typing.Union:
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                _check_value(arg, value, path)
                return
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if len(errors) == 1 else f"{path}: matches none of "
                          f"{[getattr(a, '__name__', str(a)) for a in args]}")
    if origin is typing.Literal:
        if value not in [a.value if isinstance(a, enum.Enum) else a for a in args]:
            raise SchemaError(f"{path}: {value!r} is not {list(args)}")
        return
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list")
        for i, v in enumerate(value):
            _check_value(args[0] if args else Any, v, f"{path}[{i}]")
        return
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object")
        for k, v in value.items():
            _check_value(args[1] if len(args) > 1 else Any, v, f"{path}.{k}")
        return
    if isinstance(tp, type):
        if issubclass(tp, Model):
            check(tp, value, path)
        elif issubclass(tp, enum.Enum):
            if value not in [m.value for m in tp]:
                raise SchemaError(f"{path}: {value!r} is not one of {[m.value for m in tp]}")
        elif tp is bool:
            if not isinstance(value, bool):
                raise SchemaError(f"{path}: expected a boolean")
        elif tp in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SchemaError(f"{path}: expected a number")
        elif tp is str:
            if not isinstance(value, str):
                raise SchemaError(f"{path}: expected a string, got {type(value).__name__}")
        elif tp in (datetime.datetime, datetime.timedelta, datetime.date):
            if not isinstance(value, str):
                raise SchemaError(f"{path}: expected a date/duration string")


__all__ = ["SchemaError", "check", "model"]
