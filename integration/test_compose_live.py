"""The compose target on the real Compose (``docker compose`` v2, installed by
scripts/install-compose.sh) and the real Docker engine: the conformance suite, replace under a
steady client with 0 failed requests, a failed replace that leaves the old service serving and
removes exactly what it made, delete with nothing left, Compose's own ``config`` accepting the
generated project, PostgreSQL with its secret and volume, and the whole stack end to end
(PostgreSQL, an S3 store, the MLflow tracking server on both, Prometheus) from the offline images
of ``mldeploy.plugins.compose.testing`` (built in the background by
scripts/build-compose-test-images.sh, which scripts/test.sh starts). Projects run with
``network_mode: host`` on 127.0.0.1 ports from 22200-22999 (no bridge networks here); every
image is local (``pull=never``)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.plugins.compose import project as pj
from mldeploy.plugins.compose._client import Clients, Compose, Engine
from mldeploy.plugins.compose.target import ComposeTarget
from mldeploy.target import Resource, Status
from mldeploy.testing.conformance import TargetConformance, example_model_dir

pytestmark = pytest.mark.integration
REQUEST = (example_model_dir() / "serving_input_example.json").read_bytes()
_next = iter(range(22200, 22999))


def _port() -> int:
    for port in _next:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left in 22200-22999")


@pytest.fixture(scope="session")
def compose(docker_engine: Any) -> Compose:
    from mldeploy.errors import MldeployError

    try:
        c = Compose.find()
    except MldeployError as exc:
        pytest.skip(f"{exc.message} ({exc.hint})")
    if c.v1:
        pytest.skip(f"these tests drive Compose v2; found {c.describe}")
    return c


@pytest.fixture
def projects(tmp_path: Path, docker_engine: Any, compose: Compose):
    root = tmp_path / "projects"
    root.mkdir()
    yield root
    for folder in root.iterdir():  # whatever a failing test left: down, never by name
        if (folder / "compose.yaml").is_file():
            subprocess.run([*compose.command, "--project-directory", str(folder), "down",
                            "--volumes", "--remove-orphans"], cwd=folder, capture_output=True,
                           timeout=120, check=False)


@pytest.fixture
def make(projects: Path, base_image: str, docker_engine: Any, compose: Compose):
    def build(**config: Any) -> ComposeTarget:
        cfg = {"projects_dir": str(projects), "network_mode": "host",
               "publish": f"127.0.0.1:{_port()}", "build": {"base_image": base_image},
               "images": {"proxy": base_image}, "pull": "never", "cpus": 1, "memory": "2g",
               "stop_grace_period": 5, "timeout_seconds": 240, **config}
        return ComposeTarget(cfg, clients=Clients(compose=compose,
                                                  engine=Engine(docker_engine)))

    return build


def _inventory(docker_engine: Any, projects: Path) -> set[str]:
    names = {c.name for c in docker_engine.containers.list(
        all=True, filters={"label": "com.docker.compose.project.working_dir"})
        if c.labels.get("com.docker.compose.project.working_dir", "").startswith(str(projects))}
    return names | {str(p) for p in projects.iterdir()}


def _break(target: ComposeTarget, reason: str) -> None:
    """The next model service points at a model path named after the reason: the server exits
    at start and prints it into its log (a real failure, not a stub)."""
    env = {**target.config.env, "MLDEPLOY_MODEL_URI": f"/opt/ml/{reason}"}
    target.config = dataclasses.replace(target.config, env=env)


class TestComposeConformance(TargetConformance):
    @pytest.fixture
    def target(self, make):
        return make()

    @pytest.fixture
    def inventory(self, docker_engine, projects):
        return lambda: _inventory(docker_engine, projects)

    @pytest.fixture
    def fail_next_deploy(self, target):
        return lambda reason: _break(target, reason)


def _post(port: int) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/invocations", body=REQUEST,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_replace_under_load_then_failed_replace_then_delete(make, docker_engine, projects,
                                                            tmp_path):
    target = make()
    port = int(target.config.publish.rpartition(":")[2])
    dep = target.create("steady", str(example_model_dir()))
    assert dep.status is Status.READY and dep.details["active"] == "model-blue"
    other = tmp_path / "other"
    shutil.copytree(example_model_dir(), other)
    (other / "README.txt").write_text("the second model\n")

    dep, results = _under_load(port, lambda: target.replace("steady", str(other)))
    assert dep.details["active"] == "model-green" and dep.model_uri == str(other)
    assert len(results) > 5, "the client ran during the replace"
    failed = [r for r in results if r != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    services = {c.labels["com.docker.compose.service"] for c in docker_engine.containers.list(
        filters={"label": "com.docker.compose.project=mldeploy-steady"})}
    assert services == {"proxy", "model-green"}, "the old model service is gone"

    before = _inventory(docker_engine, projects)
    files_before = (projects / "steady" / "compose.yaml").read_text()
    _break(target, "broken-on-purpose")
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("steady", str(example_model_dir()))
    assert "model-blue did not become healthy" in info.value.message
    assert "broken-on-purpose" in info.value.message, "the server's log tail is in the error"
    assert info.value.leftover == []
    assert _inventory(docker_engine, projects) == before, "removes exactly what it created"
    assert (projects / "steady" / "compose.yaml").read_text() == files_before
    assert _post(port) == (200, {"predictions": [1, 1, 0]}) or _post(port)[0] == 200
    assert target.get("steady").model_uri == str(other)

    gone = target.delete("steady")
    assert gone.existed and {r.kind for r in gone.removed} == {"container", "project-dir"}
    assert _inventory(docker_engine, projects) == set()
    with pytest.raises(OSError):
        _post(port)


def test_compose_itself_accepts_the_generated_project(make, projects, compose):
    """Differential: the vendored schema and Compose's own parser agree on the full stack."""
    for mode in ("bridge", "host"):
        target = make(network_mode=mode, **{"with": "tracking,postgres,artifacts,metrics"})
        state = target._new_state(f"cfg-{mode}")
        state.models["blue"] = pj.ModelState("blue", "mldeploy-compose-model:0", "m", port=22198)
        files = target._write(state)
        assert pj.schema_errors(files.compose) == []
        out = compose.config(projects / f"cfg-{mode}", ["compose.yaml"])
        assert "model-blue" in out and "service_healthy" in out
        assert "${MODEL_" not in out and "${PUBLISH" not in out, "Compose interpolated .env"


IMAGES_WAIT = float(os.environ.get("MLDEPLOY_COMPOSE_IMAGES_WAIT", "1500"))
MARKERS = Path(__file__).resolve().parents[1] / ".cache" / "compose-test-images"


def _building(marker: Path) -> bool:
    """scripts/build-compose-test-images.sh --background is still at work: its marker names a
    live process (or was written by --background moments ago, before the builder's pid)."""
    try:
        text, age = marker.read_text().strip(), time.time() - marker.stat().st_mtime
    except OSError:
        return False
    if not text:
        return age < 60
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def stack_images(base_image: str, docker_engine: Any) -> dict[str, str]:
    """The offline Debian (PostgreSQL, Prometheus) and Python (tracking server, S3 store) images:
    waits while scripts/test.sh's background build runs, then builds what is still missing
    (nothing, once it is done)."""
    from mldeploy.plugins.compose.testing import ImageUnavailable, build_all

    deadline = time.monotonic() + IMAGES_WAIT
    while _building(MARKERS / "building"):
        if time.monotonic() > deadline:
            pytest.fail(f"scripts/build-compose-test-images.sh still builds after "
                        f"{IMAGES_WAIT:.0f} s (MLDEPLOY_COMPOSE_IMAGES_WAIT); its log: "
                        f"{MARKERS / 'log'}")
        time.sleep(3)
    try:
        return {what: ref for what, (ref, _s) in build_all(base_image).items()}
    except ImageUnavailable as exc:
        pytest.skip(f"no offline images for the stack's services: {exc}")


def _override(tmp_path: Path, images: dict[str, str], services: set[str]) -> Path:
    from mldeploy.plugins.compose.testing import override, overrides

    return override(tmp_path / "offline.yaml",
                    overrides(images["debian"], images["python"], services))


def _container(docker_engine: Any, project: str, service: str) -> Any:
    (c,) = docker_engine.containers.list(filters={"label": [
        f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]})
    return c


def test_postgres_with_its_secret_and_volume(make, docker_engine, projects, tmp_path,
                                             stack_images):
    ov = _override(tmp_path, stack_images, {"postgres"})
    target = make(**{"with": "postgres", "override_files": [str(ov)],
                     "secrets": {"api_token": "tok-4711"}})
    dep = target.create("pg", str(example_model_dir()))
    assert dep.status is Status.READY, dep.failure_reason
    assert dep.details["services"]["postgres"] == "running (healthy)"
    port = target._load("pg").ports["postgres"]
    password = (projects / "pg" / "secrets" / "postgres_password").read_text()
    pg = _container(docker_engine, "mldeploy-pg", "postgres")
    ok = pg.exec_run(["psql", f"postgresql://mlflow:{password}@127.0.0.1:{port}/mlflow",
                      "-tAc", "select 1"])
    assert ok.exit_code == 0 and ok.output.strip() == b"1", ok.output
    wrong = pg.exec_run(["psql", f"postgresql://mlflow:wrong@127.0.0.1:{port}/mlflow",
                         "-tAc", "select 1"])
    assert wrong.exit_code != 0 and b"password authentication failed" in wrong.output
    model = _container(docker_engine, "mldeploy-pg", "model-blue")
    assert model.exec_run(["cat", "/run/secrets/api_token"]).output == b"tok-4711"
    assert model.attrs["Config"]["User"] != "0:0"
    for c in (pg, model):  # the secrets are files, not in the environment or labels
        seen = json.dumps([c.attrs["Config"]["Env"], c.attrs["Config"]["Labels"]])
        assert password not in seen and "tok-4711" not in seen
    assert _post(int(target.config.publish.rpartition(":")[2]))[0] == 200

    volume = "mldeploy-pg_postgres-data"
    gone = target.delete("pg")
    assert gone.existed and docker_engine.volumes.get(volume)  # data kept by default
    assert (projects / "pg" / "secrets" / "postgres_password").read_text() == password
    assert {r.kind for r in gone.removed} == {"container"}
    again = make(volumes=True).delete("pg")
    assert Resource("volume", volume) in again.removed
    assert volume not in {v.name for v in docker_engine.volumes.list()}
    assert not (projects / "pg").exists()


def _get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _under_load(port: int, action: Any) -> tuple[Any, list[int | str]]:
    """``action()`` while a client posts to ``port`` without pause; every answer's status (or
    exception name)."""
    results: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                results.append(_post(port)[0])
            except Exception as exc:  # noqa: BLE001 - counted as a failed request
                results.append(type(exc).__name__)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        return action(), results
    finally:
        stop.set()
        thread.join(60)


def _scraped(base: str, color: str) -> tuple[list[Any], list[Any]]:
    """Prometheus' active targets and its count of ``color``'s answered invocations, once it
    scrapes ``color`` alone (it re-reads the target file every 5 s) or after 90 s."""
    query = urllib.parse.quote('mldeploy_requests_total{route="/invocations",status="200"}')
    deadline = time.monotonic() + 90
    targets: list[Any] = []
    found: list[Any] = []
    while time.monotonic() < deadline and not (found and len(targets) == 1):
        targets = _get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        if any(t["health"] == "up" and t["labels"].get("color") == color for t in targets):
            found = [r for r in _get_json(f"{base}/api/v1/query?query={query}")["data"]["result"]
                     if r["metric"].get("color") == color]
        time.sleep(1)
    return targets, found


def test_full_stack_end_to_end(make, docker_engine, projects, tmp_path, stack_images,
                               monkeypatch):
    """The whole stack from the offline images: PostgreSQL, the S3 store, the tracking server
    on both, Prometheus. The example model is registered in the stack's tracking server (its
    files land in the store's bucket), ``models:/clf@champion`` replaces the model service
    under a steady client, a broken replace leaves it serving, delete leaves nothing running
    and the data volumes only until ``volumes=true``."""
    mlflow = pytest.importorskip("mlflow")
    boto3 = pytest.importorskip("boto3")
    wanted = {"tracking", "postgres", "artifacts", "metrics"}
    ov = _override(tmp_path, stack_images, wanted)
    target = make(**{"with": ",".join(sorted(wanted)), "override_files": [str(ov)]})
    port = int(target.config.publish.rpartition(":")[2])
    dep = target.create("stack", str(example_model_dir()))
    assert dep.status is Status.READY, dep.failure_reason
    assert {s: dep.details["services"][s] for s in wanted} == dict.fromkeys(
        wanted, "running (healthy)")
    ports = target._load("stack").ports
    uri = f"http://127.0.0.1:{ports['tracking']}"
    model_env = _container(docker_engine, "mldeploy-stack", "model-blue").attrs["Config"]["Env"]
    assert f"MLFLOW_TRACKING_URI={uri}" in model_env  # the model service knows its registry

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("compose-e2e"))
    client.log_artifacts(run.info.run_id, str(example_model_dir()), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("clf")
    version = client.create_model_version("clf", f"{run.info.artifact_uri}/model",
                                          run.info.run_id)
    client.set_registered_model_alias("clf", "champion", version.version)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{ports['artifacts']}",
                      region_name="us-east-1", aws_access_key_id="any",
                      aws_secret_access_key="any")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/model/MLmodel") for k in keys), keys

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    dep, results = _under_load(port, lambda: target.replace("stack", "models:/clf@champion"))
    assert dep.status is Status.READY and dep.model_uri == "models:/clf@champion"
    assert dep.details["active"] == "model-green"
    assert len(results) > 5, "the client ran during the replace"
    failed = [r for r in results if r != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    assert _post(port) == (200, {"predictions": [1, 1, 0]})
    targets, found = _scraped(f"http://127.0.0.1:{ports['metrics']}", "green")
    assert [t["scrapeUrl"] for t in targets] == [
        f"http://127.0.0.1:{target._load('stack').models['green'].port}/metrics"]
    assert found and float(found[0]["value"][1]) >= 1, "Prometheus scraped the new service"

    before = _inventory(docker_engine, projects)
    _break(target, "broken-on-purpose")
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("stack", str(example_model_dir()))
    assert "model-blue did not become healthy" in info.value.message
    assert _inventory(docker_engine, projects) == before, "removes exactly what it created"
    assert _post(port) == (200, {"predictions": [1, 1, 0]})
    assert target.get("stack").model_uri == "models:/clf@champion"

    volumes = {f"mldeploy-stack_{v}" for v in ("postgres-data", "artifacts-data",
                                                "metrics-data")}
    gone = target.delete("stack")
    assert gone.existed and {r.kind for r in gone.removed} == {"container"}
    assert not docker_engine.containers.list(
        all=True, filters={"label": "com.docker.compose.project=mldeploy-stack"})
    assert volumes <= {v.name for v in docker_engine.volumes.list()}, "data kept by default"
    with pytest.raises(OSError):
        _post(port)
    again = make(volumes=True).delete("stack")
    assert {Resource("volume", v) for v in volumes} <= set(again.removed)
    assert not volumes & {v.name for v in docker_engine.volumes.list()}
    assert _inventory(docker_engine, projects) == set()
