"""The gateway's side toward the containers: keep-alive connections (:class:`UpstreamConn`)
pooled per container (:class:`Upstream`), and one request/response (:class:`Exchange`), all
callback-driven on the event loop like the client side in ``_http``.

Clients are parsed by h11; the containers' answers by :class:`ResponseReader`, a strict reader
of only what a serving container sends (its peers are the endpoint's own containers, never the
internet): h11's client side costs ~120 µs of CPU per exchange on the bench machine, about half
the gateway's whole cost per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from mldeploy.plugins.local._http import Response

MAX_IDLE_PER_UPSTREAM = 64
MAX_RESPONSE_HEAD = 64 * 1024
MAX_RESPONSE_BODY = 256 * 1024 * 1024
_LENGTH, _CHUNKED, _UNTIL_CLOSE = range(3)


class UpstreamError(Exception):
    """A response the gateway will not pass on (the exchange fails with 502)."""


class ResponseReader:
    """One response at a time from a container, in linear time: the head is parsed once when
    complete, a chunked body is decoded as it arrives (never re-scanned). Strict where a bad
    value could reach the client: one Content-Length of digits, only ``chunked`` as a
    Transfer-Encoding, no bare CR, LF or NUL in the head."""

    __slots__ = ("buf", "status", "version", "headers", "mode", "length", "parts", "size",
                 "chunk_left")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.status = 0
        self.version = b""
        self.headers: dict[bytes, bytes] = {}
        self.mode = -1  # no head yet
        self.length = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.chunk_left = -1  # -1: a chunk-size line comes next; -2: the trailers

    def feed(self, data: bytes) -> Response | None:
        """Add ``data``; the response once complete (consumed from the buffer), else None."""
        self.buf += data
        if self.mode < 0 and not self._head():
            return None
        if self.mode == _LENGTH:
            if len(self.buf) < self.length:
                return None
            body = bytes(self.buf[:self.length])
            del self.buf[:self.length]
            return self._done(body)
        if self.mode == _CHUNKED:
            return self._chunks()
        return None  # until close

    def at_close(self) -> Response | None:
        """The connection closed: the response if it was delimited by the close."""
        if self.mode == _UNTIL_CLOSE:
            return self._done(bytes(self.buf))
        return None

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_RESPONSE_HEAD:
                raise UpstreamError("the response head is too large")
            return False
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        crlf = head.count(b"\r\n")
        if head.count(b"\n") != crlf or head.count(b"\r") != crlf or b"\0" in head:
            raise UpstreamError("a bare CR, LF or NUL in the response head")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if (len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
                or len(parts[1]) != 3 or not parts[1].isdigit()):
            raise UpstreamError("malformed status line")
        self.version, self.status = parts[0], int(parts[1])
        headers: dict[bytes, bytes] = {}
        length = te = None
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise UpstreamError("malformed header line")
            name, value = name.lower(), value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit() or (length is not None and value != length):
                    raise UpstreamError("bad Content-Length")
                length = value
            elif name == b"transfer-encoding":
                if te is not None or value.lower() != b"chunked":
                    raise UpstreamError("unsupported Transfer-Encoding")
                te = value
            headers[name] = value
        self.headers = headers
        if te is not None and length is not None:
            raise UpstreamError("both Content-Length and Transfer-Encoding")
        if self.status < 200 or self.status in (204, 304):
            self.mode, self.length = _LENGTH, 0
        elif te is not None:
            self.mode, self.chunk_left = _CHUNKED, -1
        elif length is not None:
            self.mode, self.length = _LENGTH, int(length)
            if self.length > MAX_RESPONSE_BODY:
                raise UpstreamError("the response body is too large")
        else:
            self.mode = _UNTIL_CLOSE
        return True

    def _chunks(self) -> Response | None:
        buf = self.buf
        pos = 0
        try:
            while True:
                if self.chunk_left >= 0:  # inside a chunk's data (+ its CRLF)
                    need = self.chunk_left + 2
                    if len(buf) - pos < need:
                        return None
                    if buf[pos + need - 2:pos + need] != b"\r\n":
                        raise UpstreamError("malformed chunk")
                    self.parts.append(bytes(buf[pos:pos + need - 2]))
                    pos += need
                    self.chunk_left = -1
                    continue
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(buf) - pos > 4096:
                        raise UpstreamError("malformed chunk size line")
                    return None
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if self.chunk_left == -2:  # trailers, up to the empty line
                    if not line:
                        return self._done(b"".join(self.parts))
                    continue
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                    raise UpstreamError("malformed chunk size")
                n = int(size, 16)
                if n == 0:
                    self.chunk_left = -2
                    continue
                self.size += n
                if self.size > MAX_RESPONSE_BODY:
                    raise UpstreamError("the response body is too large")
                self.chunk_left = n
        finally:
            del buf[:pos]

    def _done(self, body: bytes) -> Response:
        resp = Response(self.status, self.headers, body)
        self.mode, self.parts, self.size = -1, [], 0
        return resp

    @property
    def keep_alive(self) -> bool:
        return (self.version == b"HTTP/1.1" and not self.buf
                and self.headers.get(b"connection", b"").lower() != b"close")


class UpstreamConn(asyncio.Protocol):
    """A keep-alive connection to a container, carrying one :class:`Exchange` at a time."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader()
        self.exchange: Exchange | None = None
        self.got_bytes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes, exchange: Exchange) -> None:
        self.exchange, self.got_bytes = exchange, False
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # nothing was asked: a broken peer
            self.abort()
            return
        self.got_bytes = True
        try:
            resp = self.reader.feed(data)
        except UpstreamError as exc:
            self.abort()
            ex.lost(True, str(exc))
            return
        if resp is None:
            return
        self.exchange = None
        if self.reader.keep_alive:
            self.upstream.release(self)
        else:
            self.abort()
        ex.response(resp)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.upstream.forget(self)
        ex, self.exchange = self.exchange, None
        if ex is None:
            return
        resp = self.reader.at_close()
        if resp is not None:
            ex.response(resp)
        else:
            ex.lost(self.got_bytes)

    def abort(self) -> None:
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.upstream.forget(self)


@dataclass(eq=False)
class Upstream:
    """One container: ``key`` (its name), the variant it serves, where it listens, its idle
    keep-alive connections and the number of requests in flight (read by the drain)."""

    key: str
    variant: str
    host: str
    port: int
    inflight: int = 0
    retired: bool = False
    idle: list[UpstreamConn] = field(default_factory=list)

    def take_idle(self) -> UpstreamConn | None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def release(self, conn: UpstreamConn) -> None:
        if self.retired or len(self.idle) >= MAX_IDLE_PER_UPSTREAM:
            conn.abort()
        else:
            self.idle.append(conn)

    def forget(self, conn: UpstreamConn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().abort()


class Exchange:
    """One request to an upstream and its answer: ``done(response, error)`` is called exactly
    once, unless :meth:`cancel` came first. A pooled connection the container had closed before
    answering anything is retried once on a new connection (the request was never processed)."""

    __slots__ = ("upstream", "payload", "done_cb", "conn", "task", "finished", "reused",
                 "retried")

    def __init__(self, upstream: Upstream, payload: bytes,
                 done: Callable[[Response | None, str | None], None]) -> None:
        self.upstream, self.payload, self.done_cb = upstream, payload, done
        self.conn: UpstreamConn | None = None
        self.task: asyncio.Task[object] | None = None
        self.finished = self.reused = self.retried = False

    def start(self) -> None:
        conn = self.upstream.take_idle()
        if conn is not None:
            self.reused = True
            self.conn = conn
            conn.send(self.payload, self)
        else:
            self._connect()

    def _connect(self) -> None:
        self.reused = False
        up = self.upstream
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(
            loop.create_connection(partial(UpstreamConn, up), up.host, up.port))
        self.task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            self._finish(None, f"cannot connect to {self.upstream.key} ({reason})")
            return
        transport, conn = task.result()  # type: ignore[misc]
        if self.finished:
            transport.close()
            return
        self.conn = conn
        conn.send(self.payload, self)

    def response(self, resp: Response) -> None:
        self.conn = None
        self._finish(resp, None)

    def lost(self, got_bytes: bool, why: str = "") -> None:
        self.conn = None
        if self.finished:
            return
        if self.reused and not got_bytes and not self.retried:
            self.retried = True
            self._connect()
            return
        self._finish(None, f"{self.upstream.key} sent a bad response ({why})" if why else
                     f"{self.upstream.key} closed the connection before answering")

    def _finish(self, resp: Response | None, error: str | None) -> None:
        if not self.finished:
            self.finished = True
            self.done_cb(resp, error)

    def cancel(self) -> None:
        """Give up (timeout): the connection in use is aborted, ``done`` is not called."""
        self.finished = True
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        if self.task is not None:
            self.task.cancel()


__all__ = ["Exchange", "ResponseReader", "Upstream", "UpstreamConn", "UpstreamError"]
