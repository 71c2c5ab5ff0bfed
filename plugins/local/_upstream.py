"""The gateway's side toward the containers: keep-alive connections (:class:`UpstreamConn`)
pooled per container (:class:`Upstream`), and one request/response (:class:`Exchange`), all
callback-driven on the event loop like the client side in ``_http``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from mldeploy.plugins.local._http import UNTIL_CLOSE, HttpError, Response, _Reader

MAX_IDLE_PER_UPSTREAM = 64

class UpstreamConn(asyncio.Protocol):
    """A keep-alive connection to a container, carrying one :class:`Exchange` at a time."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.reader = _Reader()
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
        r = self.reader
        r.buf += data
        try:
            lines = r.head_lines(UNTIL_CLOSE)
            if lines is None:
                return
            status_line = lines[0].split(b" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise HttpError(502, "malformed status line")
            status = int(status_line[1])
            if r.length == UNTIL_CLOSE and (status in (204, 304) or status < 200):
                r.length = 0
            headers = r.headers
            body = r.body()
        except (HttpError, ValueError):
            self.abort()
            ex.lost(True)
            return
        if body is None:
            return
        self.exchange = None
        keep = (status_line[0] == b"HTTP/1.1"
                and headers.get(b"connection", b"").lower() != b"close" and not r.buf)
        if keep:
            self.upstream.release(self)
        else:
            self.abort()
        ex.response(Response(status, headers, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.upstream.forget(self)
        ex, self.exchange = self.exchange, None
        if ex is None:
            return
        r = self.reader
        if r.head is not None and r.length == UNTIL_CLOSE:
            ex.response(Response(int(r.head[0].split(b" ", 2)[1]), r.headers,
                                 bytes(r.buf[r.start:])))
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

    def lost(self, got_bytes: bool) -> None:
        self.conn = None
        if self.finished:
            return
        if self.reused and not got_bytes and not self.retried:
            self.retried = True
            self._connect()
            return
        self._finish(None, f"{self.upstream.key} closed the connection before answering")

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


__all__ = ["Exchange", "Upstream", "UpstreamConn"]
