"""A whole, already received HTTP request -> a WSGI call -> a whole response (PEP 3333).

The transport (:mod:`._transport`) reads and checks every request before it reaches a thread, so
the app gets its body as a ``BytesIO`` of known length; chunked framing never reaches it.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

# Headers of one hop: the transport frames the response itself.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "upgrade", "proxy-connection", "te", "trailer"})


@dataclass
class WsgiResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    close: bool  # the app asked for ``Connection: close``


def environ_for(
    request: h11.Request, body: bytes, server: tuple[str, int], client: tuple[str, int] | None,
) -> dict[str, Any]:
    """The WSGI environ of ``request`` with its whole ``body``."""
    target = request.target
    if target.startswith((b"http://", b"https://")):  # absolute-form: keep path and query
        target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
    path, _, query = target.partition(b"?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
            continue
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole: CONTENT_LENGTH above is its length
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def call(app: Any, environ: dict[str, Any]) -> WsgiResponse:
    """Run ``app`` on ``environ`` (in a worker thread) and collect its whole response."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return lambda data: chunks.append(data)

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    code, _, reason = status.partition(" ")
    out: list[tuple[bytes, bytes]] = []
    wants_close = False
    for name, value in headers:
        lower = name.lower()
        if lower == "connection" and "close" in value.lower():
            wants_close = True
        if lower not in _HOP_BY_HOP:
            out.append((name.encode("latin-1"), value.encode("latin-1")))
    return WsgiResponse(int(code), reason.encode("latin-1"), out, b"".join(chunks), wants_close)
