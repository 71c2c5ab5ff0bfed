"""Serving engines: thin adapters over :mod:`mldeploy.container.protocol`.

``run(settings)`` starts the engine named by ``settings.engine`` and blocks until shutdown.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys

from ..settings import ServerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_log = logging.getLogger("mldeploy.container")


def configure_logging(level: str) -> None:
    """Log to stderr (containers collect it); one handler, set up once per server."""
    root = logging.getLogger("mldeploy")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def ports(settings: ServerSettings) -> tuple[int, ...]:
    """The ports the engine listens on: flask ``port``; mlserver also gRPC on ``port + 1`` and
    metrics on ``port + 2``."""
    if settings.engine == "mlserver":
        return (settings.port, settings.port + 1, settings.port + 2)
    return (settings.port,)


def busy_ports(host: str, wanted: tuple[int, ...]) -> list[int]:
    """The ports of ``wanted`` another process already listens on at ``host`` (a bind test,
    released at once; the engine binds them a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    busy = []
    for port in wanted:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except socket.gaierror:
                raise HostError(f"--host {host!r} is not an address or a name this machine "
                                "resolves") from None
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise HostError(f"--host {host} is not an address of this machine") from None
                if exc.errno != errno.EADDRINUSE:
                    raise
                busy.append(port)
    return busy


class HostError(Exception):
    """The address to listen on is not one of this machine's."""


def run(settings: ServerSettings) -> int:
    """Run the configured engine; returns the exit code (2: a port it needs is taken, or
    ``host`` is not an address of this machine)."""
    configure_logging(settings.log_level)
    try:
        busy = busy_ports(settings.host, ports(settings))
    except HostError as exc:
        _log.error("%s: listen on one of its own addresses (127.0.0.1, the default; 0.0.0.0 "
                   "for all of them)", exc)
        return 2
    if busy:
        extra = " (the mlserver engine also needs --port + 1 for gRPC and + 2 for metrics)" \
            if settings.engine == "mlserver" else ""
        _log.error("port %s on %s is in use by another process%s: stop it or choose another "
                   "--port / SAGEMAKER_BIND_TO_PORT", ", ".join(map(str, busy)), settings.host,
                   extra)
        return 2
    if settings.engine == "flask":
        from .flask import run as run_flask

        return run_flask(settings)
    from .mlserver import run as run_mlserver

    return run_mlserver(settings)
