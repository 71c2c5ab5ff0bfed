"""Errors the server returns to callers: one exception, one status table, one body shape.

Messages say what to fix, are clipped to :data:`MAX_MESSAGE_CHARS` and never echo the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_MESSAGE_CHARS = 600

# error_code -> HTTP status: the one table.
STATUS = {
    "BAD_REQUEST": 400,  # body is not what the protocol says
    "INVALID_PARAMETER_VALUE": 400,  # body is well-formed but does not fit the model's signature
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "NOT_ACCEPTABLE": 406,  # Accept names no format the server writes
    "CLIENT_TIMEOUT": 408,  # the request's head or body did not arrive in time (transport)
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "HEADERS_TOO_LARGE": 431,  # the request head is over the transport's limit
    "MODEL_ERROR": 500,  # the model raised
    "INTERNAL_ERROR": 500,
    "MODEL_NOT_READY": 503,
    "REQUEST_TIMEOUT": 504,
}


class ProtocolError(Exception):
    """An error for the caller: ``error_code`` (a key of :data:`STATUS`) and a message."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.error_code]


def error_body(error_code: str, message: str, request_id: str | None = None) -> bytes:
    """The JSON error body every engine returns: ``{"error_code", "message", "request_id"}``."""
    body: dict[str, Any] = {"error_code": error_code, "message": clip(message)}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


# Codes that mean the model itself failed on the request (it raised, or ran past the timeout):
# a caller sees them as mldeploy's PredictionError on every target.
MODEL_FAULT_CODES = frozenset({"MODEL_ERROR", "REQUEST_TIMEOUT"})
_TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer of the serving container as a caller reads it back: the HTTP ``status``
    and the body's ``error_code``, ``message`` and ``request_id`` (None when the body is not the
    container's JSON, e.g. a proxy's HTML page: then ``message`` is the body's text)."""

    status: int
    error_code: str | None
    message: str
    request_id: str | None = None

    @property
    def model_fault(self) -> bool:
        """The model failed (it raised or timed out), not the request or the serving stack. An
        answer without the container's code counts when it is a 5xx: the model's server answered
        it, and nothing says it was the caller's fault."""
        if self.error_code is not None:
            return self.error_code in MODEL_FAULT_CODES
        return self.status >= 500


def decode_error(status: int, body: bytes | str | None) -> ErrorAnswer:
    """The one reader of :func:`error_body`'s JSON, for every target's ``invoke``: the fields it
    finds, the message cut before any stack trace a foreign server sent and clipped."""
    raw = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body or ""
    code = request_id = None
    message = raw
    try:
        data = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        code = data.get("error_code") if isinstance(data.get("error_code"), str) else None
        rid = data.get("request_id")
        request_id = rid if isinstance(rid, str) and rid else None
        message = str(data.get("message") or data.get("error") or raw)
    message = message.split(_TRACEBACK)[0].strip()
    return ErrorAnswer(int(status), code, clip(message) or "no message", request_id)


def quoted(items: Any) -> str:
    """``'a', 'b'`` for a message, at most 25 shown."""
    items = list(items)
    shown = ", ".join(repr(n) for n in items[:25])
    return shown + (f" and {len(items) - 25} more" if len(items) > 25 else "")


def first_line(exc: BaseException | str) -> str:
    """The first line of an exception's text, clipped (never a traceback)."""
    text = str(exc).strip()
    return clip(text.splitlines()[0] if text else type(exc).__name__)


def clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."
