"""While the server process loads the model before forking its workers, a child process answers
every request on the already-bound listeners with ``503 MODEL_NOT_READY``.

Why a process and not a thread: the load is CPU-bound Python (imports, unpickling); a responder
thread in the same interpreter would take the GIL from it on every ping (a load balancer polling
``/ping`` slowed the load by a second here). The child is forked before the model's libraries are
imported, so it is small, and it runs on another core.

Contract: :meth:`LoadingResponder.start` forks and returns at once; :meth:`LoadingResponder.stop`
lets the child finish the connection it is answering, reaps it and returns. Connections the child
has not accepted stay queued on the listeners for the workers. The child never runs the parent's
``atexit`` handlers or signal handlers.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Sequence

from ..errors import error_body
from ..runtime import request_id

_HEAD_LIMIT = 16 * 1024
_IO_TIMEOUT = 1.0
_DRAIN_LIMIT = 1024 * 1024
_MESSAGE = "the model is loading: retry shortly (GET /ping answers 200 once it is ready)"


class LoadingResponder:
    """A forked child that answers 503 on ``listeners`` until :meth:`stop`."""

    def __init__(self, listeners: Sequence[socket.socket]) -> None:
        self._listeners = list(listeners)
        self._pid: int | None = None
        self._stop_w: int | None = None

    def start(self) -> LoadingResponder:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(write_fd)
            code = 0
            try:
                _serve(self._listeners, read_fd)
            except BaseException:  # noqa: BLE001 - the child must never return into the server
                code = 1
            os._exit(code)
        os.close(read_fd)
        self._pid, self._stop_w = pid, write_fd
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child (it finishes the request in hand first) and reap it."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        if self._stop_w is not None:
            os.close(self._stop_w)  # EOF on the pipe: the child's signal to exit
            self._stop_w = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return  # already reaped (by a SIGCHLD handler that waits on any child)
            if done:
                return
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                return
            time.sleep(0.005)

    def __enter__(self) -> LoadingResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(listeners: list[socket.socket], stop_fd: int) -> None:
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            readable, _, _ = select.select([stop_fd, *listeners], [], [], 1.0)
        except InterruptedError:
            continue
        if stop_fd in readable:
            return
        for listener in readable:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            with conn:
                _answer(conn)


def _answer(conn: socket.socket) -> None:
    """Read the request head, send a 503 with the JSON error body, then close."""
    conn.settimeout(_IO_TIMEOUT)
    head = b""
    try:
        while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
    except OSError:
        return
    method, rid = _parse_head(head)
    body = error_body("MODEL_NOT_READY", _MESSAGE, rid)
    response = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        f"X-Request-Id: {rid}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + (b"" if method == "HEAD" else body)
    try:
        conn.sendall(response)
        conn.shutdown(socket.SHUT_WR)
        # Read what is left of the request (a POST body) so closing does not reset the
        # connection before the client has read the answer.
        drained, deadline = 0, time.monotonic() + _IO_TIMEOUT
        while drained < _DRAIN_LIMIT and time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass


def _parse_head(head: bytes) -> tuple[str, str]:
    """The request method and the request id (the caller's when it is a sane token)."""
    lines = head.split(b"\r\n")
    method = lines[0].split(b" ", 1)[0].decode("latin-1") if lines and lines[0] else ""
    given = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-request-id":
            given = value.strip().decode("latin-1")
            break
    return method, request_id(given)
