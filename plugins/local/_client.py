"""The Docker engine calls of the local target (docker SDK), behind one small class.

:class:`Engine` is built lazily from the environment (``DOCKER_HOST`` or the socket) or handed
in as the target's ``clients`` (tests wrap it to inject failures). Containers run with the host
network and bind 127.0.0.1 only (``MLDEPLOY_HOST``), on a port given through
``SAGEMAKER_BIND_TO_PORT``. Every call runs inside :func:`~.errors.docker_errors`.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mldeploy.errors import TargetError
from mldeploy.plugins.local.errors import docker_errors, scrub

if TYPE_CHECKING:
    from mldeploy.images import ImageRequest


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    port: int
    labels: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    memory: int | None = None  # bytes
    cpus: float | None = None
    workers: int | None = None


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    id: str
    status: str  # created, running, exited, dead, ...
    exit_code: int = 0
    oom_killed: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def describe(self) -> str:
        if self.running:
            return "running"
        extra = ", out of memory" if self.oom_killed else ""
        return f"{self.status} (exit code {self.exit_code}{extra})"


class Unhealthy(Exception):
    """A new container never answered ``/ping`` with 200: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 2.0) -> int:
    """The status of ``GET /ping`` on 127.0.0.1:``port`` (0 when nothing answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


class Engine:
    """The docker SDK client and the few calls the target makes."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            with docker_errors("connect to the Docker engine"):
                import docker

                self._client = docker.from_env(timeout=120)
                self._client.ping()
        return self._client

    # -- images -----------------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        with docker_errors(f"look up image {ref}"):
            from docker.errors import ImageNotFound

            try:
                return self.client.images.get(ref).id
            except ImageNotFound:
                return None

    def build(self, request: ImageRequest, log: Callable[[str], None]) -> str:
        """Build ``request`` (the :data:`mldeploy.images.Builder` seam; fakes override it) on
        this engine; return the image id."""
        from mldeploy.images import docker_build

        return docker_build(request, log)

    # -- containers -------------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        env = {"MLDEPLOY_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(spec.port),
               **spec.env}
        if spec.workers:
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(spec.workers)
        kwargs: dict[str, Any] = {}
        if spec.memory:
            kwargs.update(mem_limit=spec.memory, memswap_limit=spec.memory)
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        with docker_errors(f"start container {spec.name}"):
            c = self.client.containers.run(
                spec.image, detach=True, name=spec.name, network_mode="host", environment=env,
                labels=spec.labels, **kwargs)
            c.reload()
            return _info(c)

    def inspect(self, name: str) -> ContainerInfo | None:
        with docker_errors(f"inspect container {name}"):
            from docker.errors import NotFound

            try:
                return _info(self.client.containers.get(name))
            except NotFound:
                return None

    def find(self, labels: dict[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with docker_errors("list containers"):
            return [_info(c) for c in self.client.containers.list(all=True, filters=filters)]

    def logs(self, name: str, lines: int) -> str:
        if lines <= 0:
            return ""
        with docker_errors(f"read the log of {name}"):
            from docker.errors import NotFound

            try:
                raw = self.client.containers.get(name).logs(tail=lines)
            except NotFound:
                return ""
        text_lines = raw.decode("utf-8", "replace").splitlines()
        return "\n".join(line[:len(line) - len(line.lstrip())] + scrub(line, 400)
                         for line in text_lines)

    def remove(self, name: str, stop_timeout: int = 10) -> bool:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; False if absent."""
        with docker_errors(f"remove container {name}"):
            from docker.errors import NotFound

            try:
                c = self.client.containers.get(name)
            except NotFound:
                return False
            try:
                if c.status == "running":
                    c.stop(timeout=stop_timeout)
                c.remove(force=True)
            except NotFound:
                return False
            return True

    def wait_healthy(self, name: str, port: int, timeout: float,
                     tick: Callable[[float], None] = lambda _s: None) -> None:
        """Wait until 127.0.0.1:``port`` answers ``/ping`` with 200; raise :class:`Unhealthy`
        if the container stops or ``timeout`` passes first."""
        started = time.monotonic()
        last_check = 0.0
        while True:
            if ping(port) == 200:
                return
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                info = self.inspect(name)
                if info is None:
                    raise Unhealthy("the container was removed while starting")
                if not info.running:
                    raise Unhealthy(f"the container stopped: {info.describe()}")
                tick(now - started)
            if now - started > timeout:
                raise Unhealthy(f"no 200 from /ping within {timeout:g} s")
            time.sleep(0.2)


def _info(c: Any) -> ContainerInfo:
    state = c.attrs.get("State", {}) or {}
    return ContainerInfo(
        name=c.name, id=c.id, status=str(state.get("Status") or c.status),
        exit_code=int(state.get("ExitCode") or 0), oom_killed=bool(state.get("OOMKilled")),
        labels=dict(c.labels or {}))


def engine_from(clients: Any) -> Engine:
    if clients is None:
        return Engine()
    if isinstance(clients, Engine):
        return clients
    if hasattr(clients, "containers") and hasattr(clients, "images"):
        return Engine(clients)  # a docker.DockerClient handed in
    raise TargetError(f"the local target cannot use {type(clients).__name__} as its clients",
                      hint="pass a docker.DockerClient or mldeploy.plugins.local Engine")


__all__ = ["ContainerInfo", "ContainerSpec", "Engine", "Unhealthy", "engine_from", "free_port",
           "ping"]
