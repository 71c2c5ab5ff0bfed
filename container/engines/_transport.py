"""The flask engine's HTTP/1.1 front: one asyncio event loop per worker process reads each
request whole, under deadlines, before a thread sees it (the design of the nginx buffer in
MLflow's image, inside the worker).

A thread-per-connection server parses the head and body on a blocking socket, so a few clients
that send one byte and stop hold every thread and ``/ping`` stops answering. Here a connection
costs a few KiB and no thread until its request is complete:

* the head must arrive within ``header_timeout`` (from the connection's start, or from the first
  byte of a request on a kept-alive connection), the body within ``body_timeout`` after it, else
  ``408 CLIENT_TIMEOUT`` (JSON, with a request id) and the connection is closed; a connection that
  never sent a byte is closed silently; idle kept-alive connections close after
  ``keepalive_timeout``;
* at most ``max_connections`` per worker: at the cap the longest-idle connection (then the oldest
  still sending its head) is closed to make room, so a flood of silent connections cannot lock
  out a load balancer's ``/ping``; connections with a request in a thread are never closed;
* framing is h11's (strict RFC 9112): malformed heads and chunked bodies, both ``Content-Length``
  and ``Transfer-Encoding``, conflicting lengths and unknown transfer codings are a ``400
  BAD_REQUEST`` JSON answer and the connection is closed; a head over 16 KiB is ``431``; a body
  over ``max_request_bytes`` is ``413`` as soon as that is known (the rest is read and dropped up
  to :data:`DRAIN_LIMIT` so the connection stays usable);
* back-pressure: a connection's reading pauses while its request is in a thread;
* :meth:`Front.drain` (SIGTERM, or a worker retiring): stop accepting, answer every request
  already received (and any that arrives within :data:`DRAIN_IDLE_GRACE`) with
  ``Connection: close``, close idle connections, return once all are closed.

The app call itself (a thread, then the response) is the caller's ``dispatch`` coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11

from ..errors import STATUS, error_body
from ..runtime import printable, request_id
from ..settings import ServerSettings
from ._wsgi import WsgiResponse, environ_for

_log = logging.getLogger("mldeploy.container")

HEAD_LIMIT = 16 * 1024
# A body over the limit is read and dropped up to this size so the client gets its 413 on a live
# connection; beyond it the connection is closed.
DRAIN_LIMIT = 128 * 1024 * 1024
DRAIN_IDLE_GRACE = 1.0  # after SIGTERM, idle kept-alive connections get this long for a request
WRITE_TIMEOUT = 30.0  # a client that does not read its answer for this long is dropped
LINGER_SECONDS = 2.0  # after a closing answer, input is read and dropped this long (no RST)
_READ_HIGH_WATER = 256 * 1024
_ACCEPTS_PER_WAKEUP = 32

IDLE, HEAD, BODY, BUSY, CLOSING = "idle", "head", "body", "busy", "closing"


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_request_bytes: int
    max_connections: int
    graceful_timeout: float

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Limits:
        return cls(settings.header_timeout, settings.body_timeout, settings.keepalive_timeout,
                   settings.max_request_bytes, settings.max_connections,
                   settings.graceful_timeout)


def too_large_message(length: int | None, limit: int) -> str:
    return (
        f"the body is {'over ' if length is None else ''}{length or limit} bytes; the limit is "
        f"{limit} bytes (MLDEPLOY_MAX_REQUEST_BYTES raises it; split the batch into smaller "
        "requests, or use an async endpoint for large payloads)"
    )


class Channel(asyncio.Protocol):
    """One client connection: feeds h11 and wakes the connection's coroutine."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        self.transport: asyncio.Transport | None = None
        self.client: Any = None
        self.server: Any = None
        self.state = IDLE
        self.since = loop.time()  # when the current state began
        self.fresh = 0  # bytes received since the connection went idle
        self.closed = False
        self.eof = False
        self.evicted = False
        self.discarding = False  # lingering close: input is counted and dropped
        self.discarded = 0
        self._unread = 0
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.client = transport.get_extra_info("peername")
        self.server = transport.get_extra_info("sockname")

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            self.discarded += len(data)
            if self.discarded > DRAIN_LIMIT and self.transport is not None:
                self.transport.abort()
            self.wake()
            return
        self.h.receive_data(data)
        self.fresh += len(data)
        self._unread += len(data)
        if self._unread > _READ_HIGH_WATER and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.discarding:
            self.h.receive_data(b"")
        self.wake()
        return True  # half-closed: the answer can still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.wake()

    # --- for the connection's coroutine
    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float) -> None:
        """Until data, EOF, a wake-up, or ``deadline`` (loop time)."""
        if self.closed:
            return
        self._unread = 0
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def write(self, data: bytes) -> None:
        if not self.closed and not self.evicted and self.transport is not None:
            self.transport.write(data)

    async def flushed(self, deadline: float) -> bool:
        """Whether the transport's write buffer went below its high-water mark in time."""
        while self._writing_paused and not self.closed:
            if self.loop.time() >= deadline:
                return False
            waiter = self._waiter = self.loop.create_future()
            timer = self.loop.call_at(deadline, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return not self.closed

    def set_state(self, state: str) -> None:
        self.state = state
        self.since = self.loop.time()

    @property
    def idle(self) -> bool:
        """No request in progress: nothing received since the last answer."""
        return self.state == IDLE and not self.fresh and not self.h.trailing_data[0]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Refused(Exception):
    """A request answered with an error by the transport; the connection is closed after it."""

    def __init__(self, code: str, message: str, log_detail: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.log_detail = code, message, log_detail


Dispatch = Callable[[dict[str, Any]], Awaitable[WsgiResponse]]


class Front:
    """Accepts on the listeners and serves every connection (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits, dispatch: Dispatch,
                 environ_extra: dict[str, Any] | None = None) -> None:
        self.loop = loop
        self.limits = limits
        self._dispatch = dispatch
        self._environ_extra = environ_extra or {}
        self._listeners: list[socket.socket] = []
        self._accepting = False
        self._channels: set[Channel] = set()
        self._open = 0  # connections counted against the cap (evicted ones leave at once)
        self.draining: str | None = None
        self._idle_close_at = float("inf")
        self._all_closed = asyncio.Event()
        self._resume_timer: asyncio.TimerHandle | None = None
        self._date = (0, b"")

    # --- listening and the cap
    def listen(self, listeners: list[socket.socket]) -> None:
        self._listeners = listeners
        for listener in listeners:
            listener.setblocking(False)
        self._set_accepting(True)

    def _set_accepting(self, on: bool) -> None:
        if on == self._accepting or (on and self.draining):
            return
        for listener in self._listeners:
            if on:
                self.loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                self.loop.remove_reader(listener.fileno())
        self._accepting = on

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if self._open >= self.limits.max_connections and not self._evict():
                self._set_accepting(False)  # every connection has a request in a thread
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: back off for a moment
                _log.warning("accept failed (%s): pausing new connections for 1 s", exc)
                self._set_accepting(False)
                self._resume_timer = self.loop.call_later(1.0, self._resume_accepting)
                return
            self._open += 1
            self.loop.create_task(self._connection(sock))

    def _resume_accepting(self) -> None:
        self._resume_timer = None
        self._set_accepting(True)

    def _evict(self) -> bool:
        """Close the longest-idle connection, else the oldest one still sending its head."""
        idle = [ch for ch in self._channels if not ch.evicted and ch.idle]
        heads = [ch for ch in self._channels
                 if not ch.evicted and ch.state in (IDLE, HEAD) and not ch.idle]
        victims = idle or heads
        if not victims:
            return False
        victim = min(victims, key=lambda ch: ch.since)
        victim.evicted = True
        self._open -= 1
        if victim.transport is not None:
            victim.transport.abort()
        if not idle:
            _log.warning("at %d connections: closed one from %s that was still sending its "
                         "request head", self.limits.max_connections, _peer(victim))
        return True

    # --- draining
    def drain(self, reason: str) -> None:
        """Stop accepting; answer what was received with ``Connection: close``; close the rest."""
        if self.draining:
            return
        self.draining = reason
        self._set_accepting(False)
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        self._idle_close_at = self.loop.time() + DRAIN_IDLE_GRACE
        for ch in self._channels:
            ch.wake()
        if not self._channels:
            self._all_closed.set()

    async def closed(self, timeout: float) -> bool:
        """After :meth:`drain`: wait until every connection closed, or abort them at
        ``timeout``. Returns whether all closed in time."""
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            for ch in list(self._channels):
                if ch.transport is not None:
                    ch.transport.abort()
            return False

    @property
    def connections(self) -> int:
        return len(self._channels)

    # --- one connection
    async def _connection(self, sock: socket.socket) -> None:
        ch = Channel(self.loop)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self.loop.connect_accepted_socket(lambda: ch, sock)
        except OSError:
            sock.close()
            self._release(ch)
            return
        self._channels.add(ch)
        try:
            await self._serve(ch)
        except Exception:  # noqa: BLE001 - one connection's bug must not stop the worker
            _log.exception("connection from %s failed", _peer(ch))
        finally:
            await self._close(ch)
            self._channels.discard(ch)
            self._release(ch)

    def _release(self, ch: Channel) -> None:
        if not ch.evicted:
            self._open -= 1
        if self.draining:
            if not self._channels:
                self._all_closed.set()
        elif not self._accepting and self._resume_timer is None:
            self._set_accepting(True)

    async def _serve(self, ch: Channel) -> None:
        loop, limits, h = self.loop, self.limits, ch.h
        # First request: the head must be in within header_timeout of the connection's start
        # (a connection that never sends a byte is closed then).
        head_deadline: float | None = loop.time() + limits.header_timeout
        idle_deadline = head_deadline
        while True:
            ch.set_state(IDLE)
            request = await self._head(ch, head_deadline, idle_deadline)
            if request is None:
                return
            rid = request_id(_header(request, b"x-request-id"))
            try:
                body = await self._body(ch, request, rid)
            except _Refused as refused:
                await self._refuse(ch, refused, rid, request)
                return
            if body is None:  # answered 413 and drained, or the client went away
                if h.our_state is h11.DONE and h.their_state is h11.DONE and not ch.closed:
                    h.start_next_cycle()
                    head_deadline, idle_deadline = self._next_deadlines(ch)
                    continue
                return
            ch.set_state(BUSY)
            environ = environ_for(request, body, _address(ch.server), _address(ch.client))
            environ.update(self._environ_extra)
            try:
                response = await self._dispatch(environ)
            except Exception:  # noqa: BLE001 - the app's bug is a 500 for this request only
                _log.exception("rid=%s unhandled error", rid)
                await self._refuse(ch, _Refused(
                    "INTERNAL_ERROR", "internal server error; the server log has the details"),
                    rid, request)
                return
            # Draining: close after this answer unless the next request is already arriving.
            close = response.close or (self.draining is not None and not h.trailing_data[0])
            if not await self._respond(ch, request, response, close):
                return
            if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                return  # h11 says the connection must close (HTTP/1.0, Connection: close)
            h.start_next_cycle()
            head_deadline, idle_deadline = self._next_deadlines(ch)

    def _next_deadlines(self, ch: Channel) -> tuple[float | None, float]:
        now = self.loop.time()
        ch.fresh = 0
        head = now + self.limits.header_timeout if ch.h.trailing_data[0] else None
        return head, now + self.limits.keepalive_timeout

    async def _head(self, ch: Channel, head_deadline: float | None,
                    idle_deadline: float) -> h11.Request | None:
        """The next request's head; None when the connection is to be closed."""
        loop, h = self.loop, ch.h
        while True:
            try:
                event = h.next_event()
            except h11.ProtocolError as exc:
                await self._refuse(ch, _framing_error(exc), None, None)
                return None
            if event is not h11.NEED_DATA:
                break
            if ch.closed or ch.evicted:
                return None
            now = loop.time()
            if ch.fresh and head_deadline is None:  # first byte of a kept-alive request
                head_deadline = now + self.limits.header_timeout
            if head_deadline is not None and ch.fresh:
                ch.state = HEAD
                deadline = head_deadline
            else:
                deadline = idle_deadline
                if self.draining:
                    deadline = min(deadline, self._idle_close_at)
            if now >= deadline:
                if ch.fresh:
                    await self._refuse(ch, _Refused(
                        "CLIENT_TIMEOUT",
                        f"the request head did not arrive within {self.limits.header_timeout:g}"
                        " s (MLDEPLOY_HEADER_TIMEOUT sets the limit)"), None, None)
                return None
            await ch.wait(deadline)
        if type(event) is h11.ConnectionClosed:
            return None
        assert type(event) is h11.Request
        # h11 bounds a head only while it is incomplete: one that arrived whole in one read can
        # be larger than HEAD_LIMIT (a 20 KiB head sent at once), so it is measured here too.
        if _head_size(event) > HEAD_LIMIT:
            await self._refuse(ch, _framing_error(_HEAD_TOO_LARGE), None, event)
            return None
        return event

    async def _body(self, ch: Channel, request: h11.Request, rid: str) -> bytes | None:
        """The whole body; None when a 413 was answered (and the body drained) or the client
        left. Raises :class:`_Refused` for a request to refuse and close."""
        loop, h, limit = self.loop, ch.h, self.limits.max_request_bytes
        ch.set_state(BODY)
        lengths = [v for n, v in request.headers if n == b"content-length"]
        chunked = any(n == b"transfer-encoding" for n, _ in request.headers)
        if chunked and lengths:
            raise _Refused("BAD_REQUEST", "the request has both Content-Length and "
                           "Transfer-Encoding (RFC 9112 6.1): send one of them")
        length = int(lengths[0]) if lengths else None
        encoding = _header(request, b"content-encoding")
        if (chunked or length) and encoding and encoding.strip().lower() != "identity":
            # A compressed body is never inflated here: a small gzip bomb would be huge.
            raise _Refused("UNSUPPORTED_MEDIA_TYPE",
                           "Content-Encoding is not supported: send the body uncompressed")
        if length is not None and length > limit:
            return await self._too_large(ch, request, rid, length)
        if h.they_are_waiting_for_100_continue:
            ch.write(h.send(h11.InformationalResponse(status_code=100, headers=[])))
        deadline = loop.time() + self.limits.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._event(ch, deadline)
            if event is None:
                if ch.closed:
                    return None
                raise _Refused("CLIENT_TIMEOUT",
                               f"the request body did not arrive within "
                               f"{self.limits.body_timeout:g} s (MLDEPLOY_BODY_TIMEOUT sets the "
                               "limit)")
            if type(event) is h11.Data:
                size += len(event.data)
                if size > limit:
                    return await self._too_large(ch, request, rid, None, size)
                chunks.append(event.data)
            elif type(event) is h11.EndOfMessage:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:
                return None  # ConnectionClosed

    async def _event(self, ch: Channel, deadline: float) -> Any:
        """The next h11 event, or None at ``deadline`` or when the connection is gone."""
        h = ch.h
        while True:
            try:
                event = h.next_event()
            except h11.ProtocolError as exc:
                raise _framing_error(exc) from None
            if event is not h11.NEED_DATA:
                return event
            if ch.closed or ch.evicted or self.loop.time() >= deadline:
                return None
            await ch.wait(deadline)

    async def _too_large(self, ch: Channel, request: h11.Request, rid: str,
                         length: int | None, received: int = 0) -> None:
        """Answer 413 now; keep the connection when the rest of the body can be read and
        dropped (up to :data:`DRAIN_LIMIT`, within the body timeout)."""
        h = ch.h
        limit = self.limits.max_request_bytes
        waiting = h.they_are_waiting_for_100_continue
        keep = not waiting and not self.draining and (length or 0) <= DRAIN_LIMIT
        _log_request(request, 413, rid)
        self._send(ch, request, 413, error_body(
            "REQUEST_TOO_LARGE", too_large_message(length, limit), rid), rid, close=not keep)
        if not keep:
            return None
        deadline = self.loop.time() + self.limits.body_timeout
        try:
            while True:
                event = await self._event(ch, deadline)
                if event is None or type(event) is not h11.Data:
                    break
                received += len(event.data)
                if received > DRAIN_LIMIT:
                    break
        except _Refused:
            pass  # a broken rest of the body: the connection closes after the 413
        return None

    # --- answers
    def _send(self, ch: Channel, request: h11.Request | None, status: int, body: bytes,
              rid: str, close: bool) -> None:
        headers = [(b"Content-Type", b"application/json"), (b"X-Request-Id", rid.encode()),
                   (b"Date", self._http_date())]
        if close:
            headers.append((b"Connection", b"close"))
        head_only = request is not None and request.method == b"HEAD"
        try:
            data = ch.h.send(h11.Response(
                status_code=status, reason=http.HTTPStatus(status).phrase.encode(),
                headers=[*headers, (b"Content-Length", str(len(body)).encode())]))
            if body and not head_only:
                data += ch.h.send(h11.Data(data=body))
            data += ch.h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # h11 will not answer in this state (e.g. the request line itself was broken):
            # write the answer directly; the connection closes after it.
            phrase = http.HTTPStatus(status).phrase
            lines = [f"HTTP/1.1 {status} {phrase}".encode()]
            lines += [n + b": " + v for n, v in headers]
            if not close:
                lines.append(b"Connection: close")
            lines.append(b"Content-Length: " + str(len(body)).encode())
            data = b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)
        ch.write(data)

    async def _refuse(self, ch: Channel, refused: _Refused, rid: str | None,
                      request: h11.Request | None) -> None:
        rid = rid or request_id(None)
        status = STATUS[refused.code]
        if request is not None:
            _log_request(request, status, rid)
        else:
            _log.info("- - %d rid=%s from %s: %s", status, rid, _peer(ch),
                      printable(refused.log_detail or refused.message))
        self._send(ch, request, status, error_body(refused.code, refused.message, rid), rid,
                   close=True)

    async def _respond(self, ch: Channel, request: h11.Request, response: WsgiResponse,
                       close: bool) -> bool:
        h = ch.h
        headers = [*response.headers, (b"Date", self._http_date()),
                   (b"Content-Length", str(len(response.body)).encode())]
        if close:
            headers.append((b"Connection", b"close"))
        try:
            data = h.send(h11.Response(status_code=response.status, headers=headers,
                                       reason=response.reason))
            if response.body and request.method != b"HEAD":
                data += h.send(h11.Data(data=response.body))
            data += h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            _log.exception("the app's response to %s is not valid HTTP",
                           printable(request.target.decode("latin-1")))
            if ch.transport is not None:
                ch.transport.abort()
            return False
        ch.write(data)
        if not await ch.flushed(self.loop.time() + WRITE_TIMEOUT):
            if ch.transport is not None:
                ch.transport.abort()
            return False
        return not close

    async def _close(self, ch: Channel) -> None:
        """Close after the last answer went out: shut our side, read and drop whatever the
        client still sends for a moment (closing with unread input would reset the connection
        and could destroy the answer before the client read it), then close."""
        transport = ch.transport
        if transport is None or ch.closed:
            return
        ch.set_state(CLOSING)
        if ch.evicted:
            transport.abort()
            return
        ch.discarding = True
        deadline = self.loop.time() + LINGER_SECONDS
        if await ch.flushed(min(deadline, self.loop.time() + WRITE_TIMEOUT)):
            if transport.can_write_eof():
                with contextlib.suppress(OSError):
                    transport.write_eof()
            while not ch.eof and not ch.closed and self.loop.time() < deadline:
                await ch.wait(deadline)
        transport.close()

    def _http_date(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True).encode())
        return self._date[1]


_H11_DETAIL = re.compile(r"(:\s*)?(bytearray\()?b['\"].*$|\s*\{.*$", re.S)


def _framing_error(exc: h11.ProtocolError) -> _Refused:
    """h11's refusal as the caller's error, without echoing the request's bytes."""
    detail = str(exc)
    reason = _H11_DETAIL.sub("", detail).strip() or "malformed request"
    if exc.error_status_hint == 431:
        return _Refused("HEADERS_TOO_LARGE",
                        f"the request head is over {HEAD_LIMIT} bytes: send fewer or smaller "
                        "headers", detail)
    return _Refused("BAD_REQUEST",
                    f"the request is not valid HTTP/1.1 ({reason}): fix the client's framing",
                    detail)


_HEAD_TOO_LARGE = h11.RemoteProtocolError("request head too large", error_status_hint=431)


def _head_size(request: h11.Request) -> int:
    """The size of the request's head as sent (at least: h11 strips the values' whitespace)."""
    return (len(request.method) + len(request.target) + 12
            + sum(len(name) + len(value) + 4 for name, value in request.headers))


def _header(request: h11.Request, name: bytes) -> str | None:
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _log_request(request: h11.Request, status: int, rid: str) -> None:
    _log.info("%s %s %d rid=%s", printable(request.method.decode("latin-1")),
              printable(request.target.decode("latin-1")), status, rid)


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _peer(ch: Channel) -> str:
    address = _address(ch.client)
    return f"{address[0]}:{address[1]}" if address else "?"
