"""Minimal HTTP/1.1 for the gateway on asyncio protocols (callbacks, no task per request): message
parsing and the client side (:class:`ClientConn`); the upstream side is in ``_upstream``.

Only what the gateway needs: Content-Length and chunked bodies, keep-alive, ``Expect:
100-continue``, bodies read until close from upstreams that send neither length. Headers stay
bytes (lower-cased names) to keep the per-request cost small: this is the gateway's hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
CHUNKED = -1
UNTIL_CLOSE = -2
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class HttpError(Exception):
    """A malformed message: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def _headers(lines: list[bytes]) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return headers


def _length(headers: dict[bytes, bytes], default: int) -> int:
    if headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        return CHUNKED
    raw = headers.get(b"content-length")
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise HttpError(400, "invalid Content-Length") from None
    if n < 0 or n > MAX_BODY:
        raise HttpError(413, f"the body exceeds {MAX_BODY} bytes")
    return n


def _chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, end) of a complete chunked body starting at ``start``; None if incomplete."""
    parts: list[bytes] = []
    pos, total = start, 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(400, "malformed chunk size") from None
        pos = eol + 2
        if size == 0:
            while True:  # trailers, up to the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        total += size
        if total > MAX_BODY:
            raise HttpError(413, f"the body exceeds {MAX_BODY} bytes")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class _Reader:
    """Incremental reader of one message at a time from a byte buffer (the head is parsed once,
    then only the buffer's length is checked until the body is complete)."""

    __slots__ = ("buf", "head", "start", "length", "headers")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: list[bytes] | None = None
        self.start = 0
        self.length = 0
        self.headers: dict[bytes, bytes] = {}

    def head_lines(self, default_length: int) -> list[bytes] | None:
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise HttpError(431, "headers too large")
                return None
            self.head = bytes(self.buf[:end]).split(b"\r\n")
            self.start = end + 4
            self.headers = _headers(self.head[1:])
            self.length = _length(self.headers, default_length)
        return self.head

    def body(self) -> bytes | None:
        """The body once complete (and the message consumed from the buffer), else None."""
        if self.length == CHUNKED:
            got = _chunked(self.buf, self.start)
            if got is None:
                return None
            body, stop = got
        elif self.length == UNTIL_CLOSE:
            return None
        else:
            stop = self.start + self.length
            if len(self.buf) < stop:
                return None
            body = bytes(self.buf[self.start:stop])
        del self.buf[:stop]
        self.head = None
        return body


def render(status: int, headers: dict[bytes, bytes], body: bytes, keep_alive: bool) -> bytes:
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers.items():
        out.append(name + b": " + value + b"\r\n")
    out.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)


Respond = Callable[[int, dict[bytes, bytes], bytes], None]


class ClientConn(asyncio.Protocol):
    """One client connection: parse requests one at a time, hand each to ``handler(request,
    respond)``, write the answer when ``respond`` is called (at once or later)."""

    def __init__(self, handler: Callable[[Request, Respond], None],
                 closing: Callable[[], bool]) -> None:
        self.handler = handler
        self.closing = closing
        self.reader = _Reader()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.parsing = False
        self.continued = False
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.busy = True  # nothing more to parse or answer

    def data_received(self, data: bytes) -> None:
        self.reader.buf += data
        if not self.busy:
            self._parse()

    def _parse(self) -> None:
        self.parsing = True
        try:
            while not self.busy and self.transport is not None:
                req = self._take()
                if req is None:
                    return
                self.busy = True
                self.keep = req.keep_alive
                self.handler(req, self._respond)
        except HttpError as exc:
            from mldeploy.plugins.local._wire import gateway_error

            self.keep = False
            self.busy = True
            if self.transport is not None:
                self.transport.write(render(*gateway_error(exc.status, "BAD_REQUEST",
                                                           exc.message), False))
                self.transport.close()
        finally:
            self.parsing = False

    def _take(self) -> Request | None:
        r = self.reader
        lines = r.head_lines(0)
        if lines is None:
            return None
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise HttpError(400, "malformed request line")
        body = r.body()
        if body is None:
            if not self.continued and r.headers.get(b"expect", b"").lower() == b"100-continue":
                self.continued = True
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self.continued = False
        conn = r.headers.get(b"connection", b"").lower()
        keep = conn != b"close" if parts[2] == b"HTTP/1.1" else conn == b"keep-alive"
        return Request(parts[0], parts[1], r.headers, body, keep)

    def _respond(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        t = self.transport
        if t is None:
            return
        keep = self.keep and not self.closing()
        t.write(render(status, headers, body, keep))
        if not keep:
            t.close()
            return
        self.busy = False
        if self.reader.buf and not self.parsing:
            self._parse()


__all__ = ["CHUNKED", "UNTIL_CLOSE", "ClientConn", "HttpError", "Request", "Respond", "Response",
           "render"]
