"""The control-plane fake's Docker mode: each deployment's image runs on the real Docker engine
the way Azure ML runs a custom container.

- ``docker create`` + ``start`` with no command and no arguments (the image's own ENTRYPOINT and
  CMD), the deployment's environment variables, the model files (read back from the blob store)
  bind-mounted read-only at ``/var/azureml-app/azureml-models/<name>/<version>`` with
  ``AZUREML_MODEL_DIR`` pointing there, ``--network host``.
- Test infrastructure, not Azure: each container gets a port of its own on 127.0.0.1 (the
  container's own settings ``SAGEMAKER_BIND_TO_PORT`` and ``MLDEPLOY_HOST``), standing for the
  inference config's port, and one worker unless the deployment sets
  ``SAGEMAKER_MODEL_SERVER_WORKERS`` (the machine is small).
- The image is never pulled: an image the engine lacks fails the deployment.
- Liveness and readiness probes: HTTP GET on the inference config's routes with the
  deployment's probe settings (initial delay, period, timeout, failure and success thresholds);
  a container that exits, or a probe that reaches its failure threshold, fails the deployment.
- Containers carry :data:`LABEL` and :data:`OWNER_LABEL` (this process and fake), so
  :func:`remove_own` removes only this fake's containers on a shared engine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL = "io.mldeploy.azurefake"
OWNER_LABEL = "io.mldeploy.azurefake.owner"
DEPLOYMENT_LABEL = "io.mldeploy.azurefake.deployment"
MODEL_ROOT = "/var/azureml-app/azureml-models"
_DURATION = re.compile(r"^P(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class ProvisionError(RuntimeError):
    """The deployment failed; ``log`` is the tail of its container's log."""

    def __init__(self, message: str, log: list[str]) -> None:
        super().__init__(message)
        self.log = log


def seconds(value: Any, default: float) -> float:
    """An ISO 8601 duration as the REST API carries probe settings (``PT30S``)."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not an ISO 8601 duration: {value!r}")
    h, mi, s = (float(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


@dataclass
class Probe:
    kind: str
    path: str
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    next_at: float = 0.0
    failures: int = 0
    successes: int = 0
    last: str = ""

    @classmethod
    def of(cls, kind: str, route: dict[str, Any] | None, settings: dict[str, Any] | None,
           started: float) -> Probe:
        s = settings or {}
        delay = seconds(s.get("initialDelay"), 10)
        return cls(kind, (route or {}).get("path") or "/", delay, max(seconds(s.get("period"), 10),
                   0.2), seconds(s.get("timeout"), 2), int(s.get("failureThreshold") or 30),
                   int(s.get("successThreshold") or 1), next_at=started + delay)

    def check(self, port: int) -> bool:
        import requests

        try:
            r = requests.get(f"http://127.0.0.1:{port}{self.path}", timeout=self.timeout)
            ok = 200 <= r.status_code < 300
            self.last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            ok, self.last = False, type(exc).__name__
        self.failures, self.successes = (0, self.successes + 1) if ok else (self.failures + 1, 0)
        return ok


@dataclass
class DockerServed:
    """One deployment's running container."""

    port: int
    container: Any
    model_dir: Path
    score_path: str
    log: list[str] = field(default_factory=list)

    def log_lines(self, tail: int = 500) -> list[str]:
        return container_log(self.container, tail) or self.log

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.container.remove(force=True)
        shutil.rmtree(self.model_dir, ignore_errors=True)


def container_log(container: Any, tail: int = 500) -> list[str]:
    try:
        return container.logs(tail=tail).decode("utf-8", "replace").splitlines()
    except Exception:  # noqa: BLE001 - gone
        return []


def owner(plane: Any) -> str:
    return f"{os.getpid()}-{id(plane):x}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(plane: Any, props: dict[str, Any]) -> dict[str, Any]:
    env_id = props.get("environmentId") or ""
    m = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env_id)
    found = plane.environments.get((m[1], m[2])) if m else None
    if found is None:
        raise ProvisionError("the fake's Docker mode runs custom containers only (the deployment "
                             f"names no environment it knows: {env_id or 'none'})", [])
    return found["properties"]


def run_deployment(plane: Any, d: dict[str, Any]) -> DockerServed:
    """Run deployment ``d`` (the stored REST document) as Azure would; returns once its
    readiness probe passed, raises :class:`ProvisionError` with the container's log when it
    fails its probes or exits."""
    from docker.errors import ImageNotFound

    client = plane.docker
    props = d["properties"]
    env_props = _environment(plane, props)
    image = env_props.get("image") or ""
    try:
        client.images.get(image)
    except ImageNotFound:
        raise ProvisionError(f"image {image} is not on the engine (the fake never pulls): "
                             "push or build it first", []) from None
    routes = env_props.get("inferenceConfig") or {}
    root = Path(tempfile.mkdtemp(prefix="deployment-", dir=plane._disks))
    root.chmod(0o755)
    try:
        model_dir = plane._model_files(props.get("model", ""), root)
        mount = model_dir.parent  # root/<name>/<version>
        az_dir = f"{MODEL_ROOT}/{mount.parent.name}/{mount.name}"
        port = _free_port()
        env = {**(props.get("environmentVariables") or {}), "AZUREML_MODEL_DIR": az_dir}
        env.setdefault("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
        env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "MLDEPLOY_HOST": "127.0.0.1"})
        ep = d["id"].split("/onlineEndpoints/")[1].split("/")[0]
        container = client.containers.create(
            image, detach=True, network_mode="host", environment=env,
            volumes={str(mount): {"bind": az_dir, "mode": "ro"}},
            labels={LABEL: "1", OWNER_LABEL: owner(plane),
                    DEPLOYMENT_LABEL: f"{ep}/{d['name']}"})
        served = DockerServed(port, container, root,
                              (routes.get("scoringRoute") or {}).get("path") or "/invocations")
        try:
            container.start()
            _probe_until_ready(plane, container, port, routes, props)
        except BaseException as exc:
            log = container_log(container, 200)
            served.stop()
            if isinstance(exc, ProvisionError):
                exc.log = log
            raise
        return served
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _probe_until_ready(plane: Any, container: Any, port: int, routes: dict[str, Any],
                       props: dict[str, Any]) -> None:
    started = time.monotonic()
    live = Probe.of("Liveness", routes.get("livenessRoute"), props.get("livenessProbe"), started)
    ready = Probe.of("Readiness", routes.get("readinessRoute"), props.get("readinessProbe"),
                     started)
    until = started + plane.provision_timeout
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            raise ProvisionError(f"the container exited with code {code} before its "
                                 f"readiness probe on {ready.path} passed", [])
        now = time.monotonic()
        for probe in (live, ready):
            if now >= probe.next_at:
                probe.next_at = now + probe.period
                probe.check(port)
                if probe.failures >= probe.failure_threshold:
                    raise ProvisionError(f"{probe.kind} probe failed {probe.failures} times on "
                                         f"{probe.path} ({probe.last})", [])
        if ready.successes >= ready.success_threshold:
            return
        if now > until:
            raise ProvisionError(f"not ready after {plane.provision_timeout:g} s "
                                 f"({ready.kind} probe on {ready.path}: {ready.last})", [])
        time.sleep(0.1)


def remove_own(client: Any, plane: Any) -> int:
    """Remove the containers this fake started (by its owner label); returns how many."""
    gone = 0
    for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner(plane)}"}):
        with contextlib.suppress(Exception):
            c.remove(force=True)
            gone += 1
    return gone


__all__ = ["DEPLOYMENT_LABEL", "DockerServed", "LABEL", "MODEL_ROOT", "OWNER_LABEL",
           "ProvisionError", "Probe", "remove_own", "run_deployment", "seconds"]
