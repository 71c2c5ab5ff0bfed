"""Fixtures for real engines: the Docker engine, the offline base image, a local registry.

The Docker engine is shared by everything on the machine: a running one (``docker info``
answers) is reused as it is. Otherwise ``dockerd`` is installed when missing
(``scripts/install-docker.sh``, root only) and started loopback-safe (``--bridge=none
--iptables=false --ip-masq=false``: only the host and none networks, so no traffic leaves the
machine), and stopped again at the end of the session, unless ``MLDEPLOY_KEEP_DOCKERD=1``. Where
the engine cannot be installed or started the tests that need it skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mldeploy.testing.aws import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKERD_ARGS = ["--bridge=none", "--iptables=false", "--ip-masq=false"]
DOCKER_PIDFILE = Path("/var/run/docker.pid")


def _client(timeout: int = 600) -> Any | None:
    """A pinged docker SDK client, or None when no engine answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except (DockerException, OSError):
        return None


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _wait_for_engine(seconds: float, proc: subprocess.Popen[bytes] | None = None) -> Any | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client = _client()
        if client is not None:
            return client
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def _install_engine() -> str | None:
    """Run the idempotent install script; return the reason it failed, or None."""
    if os.geteuid() != 0:
        return "dockerd is not installed and installing it needs root"
    try:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "install-docker.sh")],
                              capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "scripts/install-docker.sh did not finish in 10 minutes"
    if proc.returncode != 0 or not shutil.which("dockerd"):
        return f"scripts/install-docker.sh failed: {(proc.stderr or proc.stdout)[-500:]}"
    return None


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A docker SDK client for the machine's engine, started here if none is running."""
    pytest.importorskip("docker", reason="the docker SDK is not installed (mldeploy[docker])")
    client = _client()
    if client is None and DOCKER_PIDFILE.exists() and _pid_alive(DOCKER_PIDFILE):
        client = _wait_for_engine(20)  # another session is starting it: wait and share it
    if client is not None:
        yield client
        client.close()
        return
    if os.environ.get("DOCKER_HOST"):
        pytest.skip(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}")
    if not shutil.which("dockerd"):
        reason = _install_engine()
        if reason:
            pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("no Docker engine runs and starting dockerd needs root")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["dockerd", *DOCKERD_ARGS], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    client = _wait_for_engine(60, proc)
    if client is None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        pytest.skip(f"dockerd did not start: {log.read_text(errors='replace')[-800:]}")
    try:
        yield client
    finally:
        client.close()
        if os.environ.get("MLDEPLOY_KEEP_DOCKERD") != "1" and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="session")
def base_image(docker_engine: Any) -> str:
    """The offline base image (Debian + python3, built with mmdebstrap, cached as a tarball under
    the cache dir); ``MLDEPLOY_TEST_BASE_IMAGE`` names another local image instead."""
    explicit = os.environ.get("MLDEPLOY_TEST_BASE_IMAGE")
    if explicit:
        return explicit
    if not shutil.which("mmdebstrap"):
        reason = _install_engine()
        if reason:
            pytest.skip(f"cannot build the offline base image: {reason}")
    try:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "build-base-image.sh")],
                              capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/build-base-image.sh did not finish in 15 minutes")
    if proc.returncode != 0:
        pytest.skip(f"cannot build the offline base image: {proc.stderr[-800:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker registry (Debian's docker-registry, distribution 2.x) on 127.0.0.1; yields
    ``127.0.0.1:PORT``. The engine treats 127.0.0.0/8 registries as insecure (plain HTTP)."""
    binary = shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None)
    if binary is None:
        reason = _install_engine()
        binary = shutil.which("docker-registry")
        if reason or binary is None:
            pytest.skip(f"no docker-registry binary: {reason or 'not installed'}")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n", encoding="utf-8")
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"docker-registry did not start: {log.read_text(errors='replace')[-500:]}")
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def state_dir(tmp_path: Path, docker_engine: Any) -> Iterator[Path]:
    """A local-target state directory; afterwards whatever a failing test left there is
    removed: this state dir's gateways and containers only."""
    from mldeploy.plugins.local._resources import LABEL_HOME, home_id
    from mldeploy.plugins.local.testing import gateway_pids

    d = tmp_path / "state"
    yield d
    for pid in gateway_pids(d):
        os.kill(pid, signal.SIGKILL)
    for c in docker_engine.containers.list(all=True, filters={"label": f"{LABEL_HOME}="
                                                              f"{home_id(d)}"}):
        c.remove(force=True)
