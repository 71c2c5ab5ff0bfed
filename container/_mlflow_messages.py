"""MLflow's schema-enforcement errors told again without the values they quote.

Where MLflow's own functions parse and enforce a body (:mod:`mldeploy._compat_mlflow`), their
messages quote the offending value (``could not convert string to float: 'secret'``, ``for value
`secret```, ``unable to parse: secret``). The server relays what they say — the column, the
property, the param, the types — and the *kind* of value that was sent, never the value:
:func:`describe` builds the message from names MLflow takes from the model's schema and from
fixed wording; what it does not recognise loses every quoted fragment. Params are described from
the request itself (:func:`bad_params`), by the same function MLflow checks them with.

``tests/test_mlflow_messages.py`` has one test per MLflow message below, so an MLflow release that
rewords one fails there.
"""

from __future__ import annotations

import re
from typing import Any

# MLflow's predict wraps the reason in this line; the reason is the exception's cause
_WRAPPER = "Failed to enforce model input schema"
_PREFIX = re.compile(r"^(Invalid input\. )?(Data is not compatible with model signature\. )?")
_COLUMN = re.compile(r"Failed to convert column (?P<name>.+?) to type '(?P<type>.*?)'\. Error: ",
                     re.S)
_NUMPY_STR = re.compile(r"<U\d*")  # numpy's name for its string dtype
_QUOTED = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"")

# (what MLflow says, the kind of value it means); the first match wins. Each pattern matches only
# MLflow's fixed wording and the type names it prints, never the value it quotes.
_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.S), kind) for p, kind in (
    (r"Failed to enforce schema for key `(?P<key>\w+)`\. Expected type (?P<want>[\w()]+), "
     r"received type (?P<got>\w+)", "property '{key}' must be {want} (got a {got})"),
    (r"Missing required properties", "a required property is missing"),
    (r"Invalid properties not defined in the schema found", "it has properties the schema does "
     "not define"),
    (r"Expected data to be (?P<want>[\w ]+?), got (?P<got>\w+)\W*$",
     "got a {got} where {want} belongs"),
    (r"with dtype `(?P<want>\w+)`\W*$", "a value that is not {want}"),
    (r"Incompatible input types for column (?P<column>\S+)\. Can not safely convert "
     r"(?P<got>[\w<>]+) to (?P<want>[\w<>\[\]]+)\.",
     "column '{column}' must be {want} (got {got} values)"),
    (r"Can not safely convert (?P<got>[\w<>]+) to (?P<want>[\w<>\[\]]+)\.",
     "got {got} values where {want} belongs"),
    (r"could not convert string to float", "got a string where a number belongs"),
    (r"invalid literal for int\(\) with base 10", "got a string where an integer belongs"),
    (r"DateParseError|unable to parse|Unknown datetime string format|time data .* does not match",
     "got a string that is not a date-time"),
    (r"Incorrect padding|Invalid base64|Non-base64|binascii",
     "got a string that is not base64"),
))


def describe(exc: BaseException, column_types: dict[str, str] | None = None) -> str:
    """MLflow's error ``exc`` (an ``MlflowException``) as one value-free line.

    ``column_types``: the signature's type of each column by name, to say ``binary`` where MLflow
    says ``<class 'object'>``."""
    text = _message(exc)
    cause = exc.__cause__ or exc.__context__
    if text.startswith(_WRAPPER) and cause is not None:
        text = _message(cause)  # the wrapper says nothing; its cause says what
    text = _PREFIX.sub("", text)
    column = _COLUMN.search(text)
    if column:
        name, kind = column["name"], _kind(text[column.end():])
        want = (column_types or {}).get(name) or column["type"]
        return f"column {name!r} must be {want} ({kind or 'got a value of another kind'})"
    kind = _kind(text)
    if kind:
        return kind
    return _QUOTED.sub("…", text)


def _kind(text: str) -> str | None:
    for pattern, wording in _KINDS:
        match = pattern.search(text)
        if match:
            return wording.format(**{k: _NUMPY_STR.sub("str", v)
                                     for k, v in match.groupdict().items()})
    return None


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


def kind_of(value: Any) -> str:
    """What a JSON value is, in words: ``a string``, ``a list``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        inside = sorted({kind_of(v) for v in value[:1000]})
        return "a list holding " + " and ".join(inside) if inside else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def bad_params(params: dict[str, Any], schema: Any) -> str | None:
    """Which ``params`` the params schema refuses, each with its type and the kind of value sent,
    by MLflow's own check run on one param at a time. None when each passes alone."""
    from mlflow.types.schema import ParamSchema

    from mldeploy import _compat_mlflow as compat

    bad = []
    for spec in getattr(schema, "params", ()) or ():
        if spec.name not in params:
            continue
        try:
            compat.enforce_params_schema({spec.name: params[spec.name]}, ParamSchema([spec]))
        except compat.mlflow_exception():
            shape = " list" if spec.shape else ""
            bad.append(f"{spec.name!r} must be {getattr(spec.dtype, 'name', spec.dtype)}{shape} "
                       f"(got {kind_of(params[spec.name])})")
    if not bad:
        return None
    return "invalid params: " + "; ".join(bad)
