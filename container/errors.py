"""Errors the server returns to callers: one exception, one status table, one body shape.

Messages say what to fix, are clipped to :data:`MAX_MESSAGE_CHARS` and never echo the request.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_MESSAGE_CHARS = 600

# error_code -> HTTP status: the one table.
STATUS = {
    "BAD_REQUEST": 400,  # body is not what the protocol says
    "INVALID_PARAMETER_VALUE": 400,  # body is well-formed but does not fit the model's signature
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
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
