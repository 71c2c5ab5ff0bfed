"""Serving engines: thin adapters over :mod:`mldeploy.container.protocol`, and the one serve path.

:data:`ENGINES` is the one list of engines (name, the ports each listens on, the module that runs
it, the extra it needs); the server settings, the image options, the targets' configs and the CLI's
``--engine`` choices all read it. :func:`serve` is what ``mldeploy serve`` and
``python -m mldeploy.container serve`` both call; :func:`run` starts a resolved engine and blocks
until shutdown.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import importlib.util
import logging
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import ServerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_log = logging.getLogger("mldeploy.container")


@dataclass(frozen=True)
class Engine:
    """One serving engine: ``module`` has ``run(settings) -> exit code``; it listens on ``port``
    plus each of ``port_offsets`` (``port_roles`` names them); ``extra`` is the mldeploy extra
    it needs (None: the core's dependencies suffice)."""

    name: str
    module: str
    description: str
    port_offsets: tuple[int, ...] = (0,)
    port_roles: tuple[str, ...] = ("HTTP",)
    extra: str | None = None

    def ports(self, port: int) -> tuple[int, ...]:
        return tuple(port + offset for offset in self.port_offsets)

    def run(self, settings: ServerSettings) -> int:
        return int(importlib.import_module(self.module).run(settings))


ENGINES: Mapping[str, Engine] = {
    engine.name: engine for engine in (
        Engine("flask", "mldeploy.container.engines.flask",
               "Flask under gunicorn, requests read by mldeploy's h11 transport"),
        Engine("mlserver", "mldeploy.container.engines.mlserver",
               "MLServer hosting the same protocol, plus its V2 routes and gRPC",
               port_offsets=(0, 1, 2), port_roles=("HTTP", "gRPC", "metrics"),
               extra="mlserver"),
    )
}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)
DEFAULT_ENGINE = "flask"


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
    """The ports the engine listens on: flask ``port`` (and ``metrics_port`` when /metrics has
    its own listener); mlserver also gRPC on ``port + 1`` and metrics on ``port + 2`` (or
    ``metrics_port``)."""
    ports = ENGINES[settings.engine].ports(settings.port)
    if settings.engine == "mlserver" and settings.metrics_port:
        return ports[:2] + (settings.metrics_port,)  # MLServer's own metrics port, moved
    if settings.engine != "mlserver" and settings.metrics_listener:
        return ports + (settings.metrics_listener,)  # a separate /metrics listener
    return ports


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


def busy_message(settings: ServerSettings, busy: list[int]) -> str:
    engine = ENGINES[settings.engine]
    extra = ""
    if len(engine.port_offsets) > 1:
        roles = ", ".join(f"+ {o} for {r}" for o, r in
                          zip(engine.port_offsets[1:], engine.port_roles[1:], strict=False))
        extra = f" (the {engine.name} engine also needs --port {roles})"
    return (f"port {', '.join(map(str, busy))} on {settings.host} is in use by another "
            f"process{extra}")
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
        _log.error("%s: stop it or choose another --port / SAGEMAKER_BIND_TO_PORT",
                   busy_message(settings, busy))
        return 2
    return ENGINES[settings.engine].run(settings)


def serve(env: Mapping[str, str] | None = None, **explicit: object) -> int:
    """The one serve path: resolve the settings (explicit values, then ``env``, then defaults),
    check the engine's ports, resolve (and download) the model once - so every worker loads the
    same local copy and a bad URI fails before the server starts - and run the engine until it
    exits. A download is removed whenever the server exits (by this process, not by forked
    workers). Bad input raises :class:`~mldeploy.errors.UsageError` (a busy port
    :class:`~mldeploy.errors.PortInUseError`); returns the engine's exit code."""
    from mldeploy.errors import MissingExtraError, PortInUseError, UsageError
    from mldeploy.model_uri import materialize

    from ..settings import ServerSettings, SettingsError

    try:
        settings = ServerSettings.resolve(env, **explicit)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    engine = ENGINES[settings.engine]
    if engine.extra and importlib.util.find_spec(engine.extra) is None:
        raise MissingExtraError(f"engine {engine.name!r} needs {engine.extra}, which is not "
                                "installed", hint=f"pip install 'mldeploy[{engine.extra}]'")
    try:
        busy = busy_ports(settings.host, ports(settings))
    except HostError as exc:  # bad input, as run() says it: exit code 2, one line
        raise UsageError(str(exc), hint="listen on one of this machine's own addresses "
                                        "(127.0.0.1, the default; 0.0.0.0 for all of them)"
                         ) from None
    if busy:
        raise PortInUseError(busy_message(settings, busy),
                             hint="stop that process or choose another --port "
                                  "(SAGEMAKER_BIND_TO_PORT)")
    with materialize(settings.model_uri) as local:
        return run(dataclasses.replace(settings, model_uri=str(local)))


__all__ = ["DEFAULT_ENGINE", "ENGINES", "ENGINE_NAMES", "Engine", "busy_ports",
           "configure_logging", "ports", "run", "serve"]
