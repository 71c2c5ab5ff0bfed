"""Raw-socket tools for the hostile-client suites (``test_hostile_serve.py`` against
``mldeploy serve``, ``test_hostile_gateway.py`` against the local target's gateway): requests
written byte by byte, a ``/ping`` sampler that runs during each attack, and RFC 9112's framing
probes (the same list for both servers)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
PROBES: dict[str, bytes] = {
    "two Content-Lengths": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                           b"Content-Length: 40\r\n\r\nhello" + SMUGGLED,
    "Content-Length list": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n"
                           b"\r\nhello" + SMUGGLED,
    "CL then TE chunked": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE chunked then CL": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                          b"\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "space before colon": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked"
                          b"\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "xchunked": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                b"0\r\n\r\n" + SMUGGLED,
    "chunked, identity": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, "
                         b"identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "identity": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"
                + SMUGGLED,
    "TE twice": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE with a tab": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\t,x"
                     b"\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "CL +5": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + SMUGGLED,
    "CL -1": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + SMUGGLED,
    "CL 5_0": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5_0\r\n\r\n" + SMUGGLED,
    "CL 0x5": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n" + SMUGGLED,
    "CL 1e1": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1e1\r\n\r\n" + SMUGGLED,
    "CL fullwidth digit": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: \xef\xbc\x95"
                          b"\r\n\r\nhello" + SMUGGLED,
    "NUL in a value": b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n"
                      b"Content-Length: 0\r\n\r\n" + SMUGGLED,
    "NUL in a name": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length\x00: 5\r\n\r\nhello"
                     + SMUGGLED,
    "bare CR in a value": b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 5"
                          b"\r\n\r\nhello" + SMUGGLED,
    "obs-fold": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                b" chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "space in a name": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent Length: 5\r\n\r\nhello"
                       + SMUGGLED,
    "HTTP/1.1x": b"POST /invocations HTTP/1.1x\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
    "HTTP/1.10": b"POST /invocations HTTP/1.10\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
    "lower-case version": b"POST /invocations http/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "two spaces in the request line": b"POST  /invocations HTTP/1.1\r\nHost: x\r\n\r\n"
                                      + SMUGGLED,
    "no Host": b"POST /invocations HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
    "chunk size 0x5": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk size -1": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"-1\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "chunk size zz": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk longer than its size": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                  b"chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk size 2^64": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                       b"\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "request line only LF": b"POST /invocations HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello"
                            + SMUGGLED,
}
# accepted on purpose (RFC 9112 allows it, h11 and gunicorn both take it): one body, no smuggling
ACCEPTED = {"request line only LF"}


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s: socket.socket, limit: float = 5.0) -> bytes:
    """Everything until the peer closes (or ``limit`` s)."""
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def ask(port: int, raw: bytes, limit: float = 5.0) -> bytes:
    """Send ``raw``, half-close, read everything until the server closes."""
    with connect(port, limit) as s:
        s.sendall(raw)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        return read_all(s, limit)


def status(reply: bytes) -> int:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
    return int(m.group(1)) if m else 0


def json_body(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


def post(body: bytes, path: str = "/invocations", extra: bytes = b"", close: bool = True,
         content_type: bytes = b"application/json") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n"
            % (path.encode(), content_type, len(body), extra,
               b"Connection: close\r\n" if close else b"") + body)


def wait_closed(socks: list[socket.socket], limit: float) -> tuple[int, list[bytes]]:
    """Wait until the server has closed each socket (EOF or reset); (closed, bytes each got)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
    closed, got = 0, []
    deadline = time.monotonic() + limit
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                key.data[0] += data
                continue
            closed += 1
            got.append(key.data[0])
            sel.unregister(key.fileobj)
    sel.close()
    return closed, got


class Pinger:
    """``GET /ping`` on each named port every 50 ms from a thread, each on a new connection;
    :meth:`check` asserts every ping was a 200 and the p99 under ``bound`` seconds, and records
    the p99 in ``report`` (the README's figures come from the printed table)."""

    def __init__(self, ports: dict[str, int], report: dict[str, dict[str, float]],
                 bound: float = 1.0, minimum: int = 3) -> None:
        self.ports, self.report, self.bound, self.minimum = ports, report, bound, minimum
        self.times: dict[str, list[float]] = {name: [] for name in ports}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, port in self.ports.items():
                started = time.monotonic()
                try:
                    reply = ask(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n", limit=10)
                    if status(reply) != 200:
                        self.failures.append(f"{name}: {reply[:80]!r}")
                except OSError as exc:
                    self.failures.append(f"{name}: {exc}")
                self.times[name].append(time.monotonic() - started)
            self._stop.wait(0.05)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # an attack that ends quickly still gets the samples check() asks for
        deadline = time.monotonic() + 10
        while (min(len(t) for t in self.times.values()) < self.minimum and not self.failures
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(15)

    def check(self, attack: str) -> None:
        assert not self.failures, self.failures[:5]
        for name, times in self.times.items():
            assert len(times) >= self.minimum, f"only {len(times)} pings to {name} in {attack}"
            ordered = sorted(times)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            self.report.setdefault(attack, {})[name] = p99
            self.report[attack][f"{name}:n"] = len(times)
            print(f"\n/ping during {attack}: {name} n={len(times)} p50="
                  f"{ordered[len(ordered) // 2] * 1000:.1f} ms p99={p99 * 1000:.1f} ms "
                  f"max={ordered[-1] * 1000:.1f} ms")
            assert p99 < self.bound, f"/ping p99 on {name} during {attack}: {p99:.2f} s"


@contextlib.contextmanager
def serve_process(cmd: list[str], port: int, log: Path, *, env: dict[str, str] | None = None,
                  start_timeout: float = 120.0,
                  not_started: Callable[[str], object]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (a server on 127.0.0.1:``port``, output to ``log``) until ``/ping`` answers
    200; yield the process, then terminate it. ``not_started(message)`` (``pytest.fail`` or
    ``pytest.skip``) is called with the log's tail when it exits or ``start_timeout`` passes."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            with contextlib.suppress(OSError):
                if status(ask(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", 2)) == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                not_started(f"{Path(cmd[0]).name} did not start: {log.read_text()[-1500:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
