"""Minimal HTTP/1.1 on asyncio streams for the gateway: read a request, write a response, and
keep-alive connection pools to the upstream containers.

Only what the gateway needs: Content-Length and chunked bodies, keep-alive, ``Expect:
100-continue``. Headers stay bytes (lower-cased names) to keep the per-request cost small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_IDLE_PER_UPSTREAM = 64
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class HttpError(Exception):
    """A malformed request: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UpstreamError(Exception):
    """The container could not be reached or broke the connection mid-answer."""


@dataclass
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, bytes]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        return await _read_chunked(reader)
    length = headers.get(b"content-length")
    if not length:
        return b""
    try:
        n = int(length)
    except ValueError:
        raise HttpError(400, "invalid Content-Length") from None
    if n < 0 or n > MAX_BODY:
        raise HttpError(413, f"the request body exceeds {MAX_BODY} bytes")
    return await reader.readexactly(n) if n else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(400, "malformed chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise HttpError(413, f"the request body exceeds {MAX_BODY} bytes")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def read_request(reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> Request | None:
    """The next request on a connection; None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HttpError(400, "incomplete request") from None
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request headers too large") from None
    method, path, version, headers = parse_head(head)
    if headers.get(b"expect", b"").lower() == b"100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await read_body(reader, headers)
    conn = headers.get(b"connection", b"").lower()
    keep = conn != b"close" if version == b"HTTP/1.1" else conn == b"keep-alive"
    return Request(method, path, headers, body, keep)


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


# -- upstream ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Upstream:
    """One container: ``key`` (its name), the variant it serves, where it listens, a pool of idle
    keep-alive connections and the number of requests in flight (read by the drain)."""

    key: str
    variant: str
    host: str
    port: int
    inflight: int = 0
    retired: bool = False
    idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=deque)

    def close_idle(self) -> None:
        while self.idle:
            _reader, writer = self.idle.pop()
            writer.close()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.key} ({exc.strerror or exc})") from None
        return reader, writer, False

    async def exchange(self, head: bytes, body: bytes) -> Response:
        """Send one request (``head`` without Content-Length, ``body``); a reused connection that
        the container had closed is retried once on a new one (nothing was processed)."""
        payload = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for attempt in (0, 1):
            reader, writer, reused = await self._connection()
            try:
                writer.write(payload)
                raw = await reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                writer.close()
                partial = getattr(exc, "partial", b"")
                if reused and attempt == 0 and not partial:
                    continue
                raise UpstreamError(f"{self.key} closed the connection") from None
            try:
                response, keep = await _read_response(reader, raw)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError):
                writer.close()
                raise UpstreamError(f"{self.key} sent an incomplete answer") from None
            except BaseException:
                writer.close()
                raise
            if keep and not self.retired and len(self.idle) < MAX_IDLE_PER_UPSTREAM:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return response
        raise UpstreamError(f"cannot reach {self.key}")  # pragma: no cover - loop returns


async def _read_response(reader: asyncio.StreamReader, raw: bytes) -> tuple[Response, bool]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(502, "malformed status line")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get(b"connection", b"").lower() != b"close" and parts[0] == b"HTTP/1.1"
    if b"content-length" in headers or b"transfer-encoding" in headers:
        body = await read_body(reader, headers)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:  # body until the container closes the connection
        chunks: list[bytes] = []
        while chunk := await reader.read(65536):
            chunks.append(chunk)
        body, keep = b"".join(chunks), False
    return Response(status, headers, body), keep


def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


__all__ = ["HttpError", "Request", "Response", "Upstream", "UpstreamError", "read_request",
           "render"]
