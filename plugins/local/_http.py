"""The gateway's client side of HTTP/1.1 on asyncio protocols (callbacks, no task per request).

Requests are parsed by h11 (strict RFC 9112 framing: one Content-Length, only
``Transfer-Encoding: chunked``, no whitespace before a colon, no control characters, an exact
``HTTP/1.x`` version); on top of it this module refuses what h11 lets through and request
smuggling relies on (a request with both Content-Length and Transfer-Encoding), and bounds
every resource a client can hold:

* time: the head must arrive within ``head_timeout`` and the body within ``body_timeout`` of
  the head (else 408 and close); a kept-alive connection idle for ``idle_timeout`` is closed;
* connections: at most ``max_connections`` (and never more than the open-file limit allows):
  a new one beyond the cap closes the connection idle the longest, or is answered 503;
* memory: a body over ``max_body`` is refused with 413 from its Content-Length (or as soon as
  a chunked body passes it) before it is buffered; bytes sent behind a request in progress are
  held up to 64 KiB, then the socket stops being read (``pause_reading``) until the answer is
  written; a client that does not read its answers stops the next request's parsing;
* CPU: a chunked body of more than ``max_chunks`` chunks is refused, and one read is parsed
  at most ``_EVENTS_PER_SLICE`` events at a time, so a flood of 1-byte chunks cannot hold the
  event loop.

Responses are rendered here (the handler's headers are the gateway's own or validated ones),
HEAD answers carry no body, a client that half-closes (``shutdown(SHUT_WR)``) after its request
still gets the answer, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

import h11

from mldeploy.plugins.local._wire import gateway_error, new_request_id, valid_request_id

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_PENDING_MAX = 64 * 1024  # bytes held behind a request in progress before reading pauses
_EVENTS_PER_SLICE = 2048  # h11 events parsed before yielding to the event loop
_LINGER = 2.0  # s: after an early error answer, unread request bytes are drained this long
_SWEEP = 0.25  # s between timeout checks
_FD_RESERVE = 128  # open files kept for the upstream pools, the log, the state file...

# phases of a client connection (what its deadline means)
_HEAD, _BODY, _BUSY, _IDLE, _LINGERING = range(5)


@dataclass(frozen=True)
class Limits:
    """What one client may hold. Each comes from the endpoint state's ``limits`` (key = the
    field name), else the environment variable in ``ENV``, else the default here."""

    max_body: int = 6 * 1024 * 1024  # the serving container's default (SageMaker real-time)
    max_head: int = 64 * 1024
    max_chunks: int = 65536
    head_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 15.0
    max_connections: int = 1000

    ENV = {"max_body": "MLDEPLOY_MAX_REQUEST_BYTES",
           "max_head": "MLDEPLOY_GATEWAY_MAX_HEAD_BYTES",
           "max_chunks": "MLDEPLOY_GATEWAY_MAX_CHUNKS",
           "head_timeout": "MLDEPLOY_GATEWAY_HEAD_TIMEOUT",
           "body_timeout": "MLDEPLOY_GATEWAY_BODY_TIMEOUT",
           "idle_timeout": "MLDEPLOY_GATEWAY_IDLE_TIMEOUT",
           "max_connections": "MLDEPLOY_GATEWAY_MAX_CONNECTIONS"}
    STATE_KEYS = {"max_body": "max_request_bytes"}

    @classmethod
    def resolve(cls, state_limits: Mapping[str, Any],
                env: Mapping[str, str] | None = None) -> Limits:
        """Build from the state's limits and the environment; a bad value is a ValueError
        naming its source."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = cls.STATE_KEYS.get(f.name, f.name)
            if state_limits.get(key) is not None:
                raw, source = state_limits[key], f"state limits.{key}"
            elif env.get(cls.ENV[f.name], "").strip():
                raw, source = env[cls.ENV[f.name]].strip(), cls.ENV[f.name]
            else:
                continue
            kind = int if f.type in (int, "int") else float
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{source}={raw!r} is not a number") from None
            if isinstance(raw, bool) or not value > 0:
                raise ValueError(f"{source}={raw!r} must be a number above 0")
            values[f.name] = value
        return cls(**values)


class Request:
    """A complete request: ``headers`` has lower-cased names (the last of repeated ones)."""

    __slots__ = ("method", "path", "headers", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes,
                 keep_alive: bool) -> None:
        self.method, self.path, self.headers = method, path, headers
        self.body, self.keep_alive = body, keep_alive


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


Respond = Callable[[int, dict[bytes, bytes], bytes], None]
Handler = Callable[[Request, Respond], None]


def render(status: int, headers: Mapping[bytes, bytes], body: bytes, keep_alive: bool,
           head: bool = False) -> bytes:
    """A response; for a HEAD request (``head``) the Content-Length of the body, not the body."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers.items():
        out.append(name + b": " + value + b"\r\n")
    out.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head:
        out.append(body)
    return b"".join(out)


class _Refused(Exception):
    """A request refused before it is complete: answered, then the connection is closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _open_file_cap() -> int:
    """Client connections the open-file limit leaves room for (each may also hold an upstream
    connection), after raising the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = 1 << 16 if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        except (ValueError, OSError):
            pass
    return max(16, (soft - _FD_RESERVE) // 2)


class Connections:
    """The client connections of one listening socket: the cap, and one timer for all
    deadlines (a sweep every 0.25 s, so a request costs no timer of its own)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cap = min(limits.max_connections, _open_file_cap())
        self.conns: set[ClientConn] = set()
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def set_limits(self, limits: Limits) -> None:
        """New limits for connections opened from now on (a reload)."""
        self.limits = limits
        self.cap = min(limits.max_connections, _open_file_cap())

    def admit(self, conn: ClientConn) -> bool:
        if len(self.conns) >= self.cap:
            idle = [c for c in self.conns if c.phase in (_IDLE, _HEAD, _LINGERING)]
            if not idle:
                self.refused += 1
                return False
            victim = min(idle, key=lambda c: c.since)
            self.evicted += 1
            victim.close()
        self.conns.add(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP, self._sweep)
        return True

    def discard(self, conn: ClientConn) -> None:
        self.conns.discard(conn)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self.conns if c.deadline <= now]:
            conn.expire()
        self._sweeper = loop.call_later(_SWEEP, self._sweep) if self.conns else None

    def close_all(self) -> None:
        for conn in list(self.conns):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def stats(self) -> dict[str, int]:
        return {"open": len(self.conns), "cap": self.cap, "refused": self.refused,
                "evicted": self.evicted, "timed_out": self.timed_out}


def _parser(limits: Limits) -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)


class ClientConn(asyncio.Protocol):
    """One client connection: parse requests one at a time, hand each to ``handler(request,
    respond)``, write the answer when ``respond`` is called (at once or later)."""

    def __init__(self, pool: Connections, handler: Handler,
                 closing: Callable[[], bool]) -> None:
        self.pool, self.limits = pool, pool.limits
        self.handler, self.closing = handler, closing
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.parser = _parser(self.limits)
        self.phase = _HEAD
        self.since = self.deadline = 0.0
        self.pending = bytearray()  # bytes behind the request in progress
        self.body: list[bytes] = []
        self.size = 0
        self.chunks = 0
        self.req: h11.Request | None = None
        self.headers: dict[bytes, bytes] = {}
        self.continued = False
        self.eof = False
        self.read_paused = False
        self.write_paused = False
        self.scheduled = False
        self.rid = b""

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm(_HEAD, self.limits.head_timeout)
        if not self.pool.admit(self):
            self.transport.write(render(*gateway_error(
                503, "TOO_MANY_CONNECTIONS", "the gateway has too many open connections; "
                "retry later", new_request_id()), False))
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.phase = _LINGERING
        self.pool.discard(self)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _LINGERING:
            return  # the answer is out: drain and drop
        if phase == _BUSY or self.scheduled or self.write_paused:
            self.pending += data
            if len(self.pending) > _PENDING_MAX:
                self._pause_reading()
            return
        if phase == _IDLE:
            self._arm(_HEAD, self.limits.head_timeout)
        self.parser.receive_data(data)
        self._events()

    def eof_received(self) -> bool:
        self.eof = True
        if self.phase == _LINGERING:
            self.close()
        elif self.phase == _IDLE and not self.pending:
            self.close()
        elif self.phase != _BUSY and not self.scheduled:
            self.parser.receive_data(b"")
            self._events()
        return True  # keep the write side open to answer what was asked

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.phase != _BUSY and self.phase != _LINGERING:
            self._schedule()

    # -- parsing ----------------------------------------------------------------------------------

    def _arm(self, phase: int, timeout: float) -> None:
        self.phase = phase
        self.since = self.loop.time()
        self.deadline = self.since + timeout

    def _events(self) -> None:
        p = self.parser
        try:
            for _ in range(_EVENTS_PER_SLICE):
                event = p.next_event()
                kind = type(event)
                if kind is h11.Data:
                    self._data(event.data)  # type: ignore[union-attr]
                elif kind is h11.Request:
                    self._head(event)  # type: ignore[arg-type]
                elif kind is h11.EndOfMessage:
                    self._dispatch()
                    return
                elif event is h11.NEED_DATA:
                    if p.they_are_waiting_for_100_continue and not self.continued:
                        self.continued = True
                        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    return
                elif kind is h11.ConnectionClosed:
                    self.close()
                    return
                else:  # PAUSED cannot happen (a new parser per request); anything else: stop
                    return
            self._schedule()  # the slice is used up: the rest after other connections' turn
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if self.eof and self.phase != _IDLE:
                self._refuse(_Refused(400, "BAD_REQUEST", "the connection was half-closed "
                                      "before the request was complete"))
            elif status == 431:
                self._refuse(_Refused(431, "HEADERS_TOO_LARGE",
                                      f"the request head exceeds {self.limits.max_head} bytes"))
            else:
                self._refuse(_Refused(status if status in (400, 501) else 400, "BAD_REQUEST",
                                      f"malformed request: {exc}"))
        except _Refused as exc:
            self._refuse(exc)

    def _head(self, event: h11.Request) -> None:
        self.req = event
        # one pass over h11's headers (lower-cased names; h11 merged identical Content-Lengths
        # and refused differing ones and repeated Transfer-Encodings)
        self.headers = headers = dict(event.headers)
        raw_length = headers.get(b"content-length")
        length = -1 if raw_length is None else int(raw_length)  # h11 checked: digits only
        chunked = b"transfer-encoding" in headers
        self.rid = headers.get(b"x-request-id", b"")
        if chunked and length >= 0:
            raise _Refused(400, "BAD_REQUEST", "a request must not carry both Content-Length "
                           "and Transfer-Encoding")
        if length > self.limits.max_body:
            raise _Refused(413, "REQUEST_TOO_LARGE",
                           f"the body ({length} bytes) exceeds the limit of "
                           f"{self.limits.max_body} bytes; split the batch into smaller requests")
        if length > 0 or chunked:
            self._arm(_BODY, self.limits.body_timeout)

    def _data(self, data: bytes) -> None:
        self.size += len(data)
        self.chunks += 1
        if self.size > self.limits.max_body:
            raise _Refused(413, "REQUEST_TOO_LARGE",
                           f"the body exceeds the limit of {self.limits.max_body} bytes; split "
                           "the batch into smaller requests")
        if self.chunks > self.limits.max_chunks:
            raise _Refused(400, "BAD_REQUEST", f"the body has more than "
                           f"{self.limits.max_chunks} chunks; send larger chunks")
        self.body.append(data)

    def _dispatch(self) -> None:
        event = self.req
        assert event is not None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        headers = self.headers
        keep = event.http_version == b"1.1"
        conn = headers.get(b"connection")
        if conn is not None and keep:
            keep = b"close" not in {t.strip().lower() for t in conn.split(b",")}
        rest, _ = self.parser.trailing_data
        if rest:
            self.pending[:0] = rest
        self.body, self.size, self.chunks, self.continued = [], 0, 0, False
        self.phase = _BUSY
        self.deadline = float("inf")
        req = Request(event.method, event.target, headers, body, keep)
        self.handler(req, self._respond_for(req))

    def _respond_for(self, req: Request) -> Respond:
        head = req.method == b"HEAD"

        def respond(status: int, headers: dict[bytes, bytes], body: bytes) -> None:
            self._respond(req.keep_alive, head, status, headers, body)

        return respond

    def _respond(self, keep: bool, head: bool, status: int, headers: dict[bytes, bytes],
                 body: bytes) -> None:
        t = self.transport
        if t is None:
            return
        # half-closed: answer what was sent; the last answer closes the connection
        keep = keep and not self.closing() and (not self.eof or bool(self.pending))
        t.write(render(status, headers, body, keep, head))
        if not keep:
            self._finish()
            return
        self.req = None
        self.parser = _parser(self.limits)
        self._arm(_IDLE, self.limits.idle_timeout)
        if self.read_paused:
            self.read_paused = False
            t.resume_reading()
        if self.pending:
            self._schedule()

    def _schedule(self) -> None:
        """Parse what is held (or left of a slice) on the loop's next turn."""
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        self.scheduled = False
        if self.transport is None or self.phase in (_BUSY, _LINGERING) or self.write_paused:
            return
        if self.pending:
            if self.phase == _IDLE:
                self._arm(_HEAD, self.limits.head_timeout)
            data, self.pending = bytes(self.pending), bytearray()
            self.parser.receive_data(data)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.eof:
            self.parser.receive_data(b"")
        self._events()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    # -- ending -----------------------------------------------------------------------------------

    def _refuse(self, exc: _Refused) -> None:
        rid = self.rid if valid_request_id(self.rid) else None
        status, headers, body = gateway_error(exc.status, exc.code, exc.message,
                                              rid.decode() if rid else None)
        self._write(render(status, headers, body, False))
        self._finish()

    def _finish(self) -> None:
        """The last answer is written: stop writing, drain what the client still sends for a
        moment (so it reads the answer instead of a reset), then close."""
        t = self.transport
        self.pending.clear()
        if t is None:
            return
        if self.eof or not t.can_write_eof():
            t.close()
            self.transport = None
            return
        t.write_eof()
        self._arm(_LINGERING, _LINGER)
        if self.read_paused:
            self.read_paused = False
            t.resume_reading()

    def expire(self) -> None:
        """The deadline of the current phase passed."""
        phase = self.phase
        if phase == _HEAD and (self.req is not None or self.parser.trailing_data[0]):
            self.pool.timed_out += 1
            self._refuse(_Refused(408, "REQUEST_TIMEOUT", f"the request head did not arrive "
                                  f"within {self.limits.head_timeout:g} s"))
        elif phase == _BODY:
            self.pool.timed_out += 1
            self._refuse(_Refused(408, "REQUEST_TIMEOUT", f"the request body did not arrive "
                                  f"within {self.limits.body_timeout:g} s"))
        else:  # silent, idle or lingering: nothing was asked
            if phase == _HEAD:
                self.pool.timed_out += 1
            self.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self.phase = _LINGERING
        self.deadline = float("inf")
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.pool.discard(self)


__all__ = ["ClientConn", "Connections", "Limits", "Request", "Respond", "Response", "render"]
