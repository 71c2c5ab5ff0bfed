"""The Azure ML target with the control-plane fake in Docker mode: each deployment's image runs on
the real Docker engine the way Azure runs a custom container (no arguments, the model mounted
read-only under /var/azureml-app/azureml-models/<name>/<version> with AZUREML_MODEL_DIR, host
network on 127.0.0.1, probes on the inference config's routes), so invoke reaches the real
serving runtime in the real image and a broken model really fails its probes.

The image is a model-less mldeploy image built once here from this tree (the model's
requirements baked in, so it shares the dependency layers of integration/test_image.py's)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed")
pytest.importorskip("docker", reason="the docker SDK is not installed (mldeploy[docker])")

from mldeploy.errors import DeploymentFailedError  # noqa: E402
from mldeploy.plugins.azureml import testing as kit  # noqa: E402
from mldeploy.plugins.azureml.testing import _docker  # noqa: E402
from mldeploy.testing.aws import free_port  # noqa: E402
from mldeploy.testing.conformance import TargetConformance, example_model_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parent.parent
SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-mldeploy", "ws-azfake"
LOCATION = f"{SUB}/{RG}/{WS}"
GENERIC = "mldeploy-azurefake/generic:test"
LABELS = {"io.mldeploy.azurefake": "1"}
FAST_PROBE = {"initial_delay": 1, "period": 1, "timeout": 2, "failure_threshold": 60}


@pytest.fixture(scope="module")
def generic_image(docker_engine: Any, base_image: str) -> str:
    """A model-less serving image of this tree (mldeploy's wheel built from the source)."""
    from mldeploy.container.image import build_docker
    from mldeploy.container.image.options import default_cache_dir
    from mldeploy.container.image.requirements import read_model
    from mldeploy.container.image.wheelhouse import mldeploy_wheel

    wheel = str(mldeploy_wheel(default_cache_dir()))
    extra = read_model(example_model_dir()).requirement_lines
    build_docker(None, GENERIC, base_image=base_image, mldeploy_wheel=wheel,
                 extra_requirements=extra, labels=LABELS)
    return GENERIC


def _body() -> bytes:
    return (example_model_dir() / "serving_input_example.json").read_bytes()


def _run_as_azure(client: Any, image: str, mount: Path, port: int) -> Any:
    """``docker run IMAGE`` with no arguments, the model at Azure's path, as Azure starts it."""
    az = "/var/azureml-app/azureml-models/clf/1"
    return client.containers.create(
        image, detach=True, network_mode="host", labels={**LABELS, "io.mldeploy.azurefake.test":
                                                           "conventions"},
        environment={"AZUREML_MODEL_DIR": az, "SAGEMAKER_BIND_TO_PORT": str(port),
                     "MLDEPLOY_HOST": "127.0.0.1", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        volumes={str(mount): {"bind": az, "mode": "ro"}})


def _wait(container: Any, url: str, timeout: float = 120) -> bool:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        container.reload()
        if container.status == "exited":
            return False
        time.sleep(0.2)
    return False


# -- 1. the image under Azure's launch conventions ---------------------------------------------

def test_image_serves_the_model_azure_mounts_with_no_arguments(docker_engine, generic_image,
                                                              tmp_path):
    mount = tmp_path / "mount"
    shutil.copytree(example_model_dir(), mount / "model")  # folder-registered: one level down
    mount.chmod(0o755)
    port = free_port()
    c = _run_as_azure(docker_engine, generic_image, mount, port)
    try:
        c.start()
        assert c.attrs["Config"]["Cmd"] == ["serve"]  # the image's own CMD: nothing passed
        url = f"http://127.0.0.1:{port}"
        assert _wait(c, url), c.logs().decode(errors="replace")[-2000:]
        r = requests.post(f"{url}/invocations", data=_body(),
                          headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 200 and isinstance(r.json()["predictions"], list)
        version = requests.get(f"{url}/version", timeout=5).json()
        assert "/var/azureml-app/azureml-models/clf/1/model" in str(version)
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("layout", ["empty", "two"])
def test_no_or_several_models_under_the_mount_stop_with_the_path(docker_engine, generic_image,
                                                                 tmp_path, layout):
    mount = tmp_path / "mount"
    mount.mkdir()
    mount.chmod(0o755)
    if layout == "two":
        shutil.copytree(example_model_dir(), mount / "a")
        shutil.copytree(example_model_dir(), mount / "b")
    c = _run_as_azure(docker_engine, generic_image, mount, free_port())
    try:
        c.start()
        code = c.wait(timeout=60)["StatusCode"]
        log = c.logs().decode(errors="replace")
        assert code == 2, log
        assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/clf/1" in log
        assert ("no MLflow model" if layout == "empty" else "2 MLflow models") in log
        assert "Traceback" not in log
    finally:
        c.remove(force=True)


# -- 2. the fake runs each deployment's image ----------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory, docker_engine, generic_image):
    binary = kit.azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed (bash scripts/install-azurite.sh; needs npm)")
    with kit.workspace(binary, tmp_path_factory.mktemp("azure-docker"), SUB, RG, WS,
                       docker=docker_engine) as plane:
        yield plane
    assert not _own(docker_engine, plane), "the fake left containers behind"


def _own(client: Any, plane: Any) -> list[Any]:
    return client.containers.list(
        all=True, filters={"label": f"{_docker.OWNER_LABEL}={_docker.owner(plane)}"})


@pytest.fixture
def plane(world):
    yield world
    assert not world.unknown, f"the SDK called routes the fake lacks: {world.unknown}"
    for name in list(world.endpoints):
        make_target().delete(name)
    world.models.clear()
    world.model_containers.clear()


def make_target(**cfg: Any) -> Any:
    from mldeploy.plugins.azureml.target import AzureMLTarget

    config = {"image": GENERIC, "poll_interval_seconds": 0, "mirror_seconds": 0,
              "timeout_seconds": 300, "liveness_probe": FAST_PROBE,
              "readiness_probe": FAST_PROBE, **cfg}
    return AzureMLTarget(config, location=LOCATION)


class TestAzureMLDockerConformance(TargetConformance):
    """The shared conformance suite with every deployment a real container."""

    @pytest.fixture
    def target(self, plane):
        return make_target()

    @pytest.fixture
    def inventory(self, plane):
        return plane.inventory

    @pytest.fixture
    def fail_next_deploy(self, plane):
        def fail(reason: str) -> None:
            plane.fail_next = reason
        return fail


def _predict(target: Any, name: str) -> list[Any]:
    return target.invoke(name, _body()).predictions


def test_deploy_runs_the_image_as_azure_does_and_invoke_reaches_it(plane, docker_engine):
    target = make_target()
    target.create("dock-ep", str(example_model_dir()))
    (c,) = _own(docker_engine, plane)
    attrs = c.attrs
    assert attrs["Config"]["Cmd"] == ["serve"] and attrs["HostConfig"]["NetworkMode"] == "host"
    assert attrs["Config"]["Labels"][_docker.DEPLOYMENT_LABEL] == "dock-ep/blue"
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    model_dir = env["AZUREML_MODEL_DIR"]
    assert model_dir.startswith("/var/azureml-app/azureml-models/dock-ep/")
    (mount,) = attrs["Mounts"]
    assert mount["Destination"] == model_dir and mount["RW"] is False
    preds = _predict(target, "dock-ep")
    assert isinstance(preds, list) and preds
    logs = target.ops().logs("dock-ep", "blue")  # get_logs is the container's own log
    assert logs.strip()
    served = plane.served[("dock-ep", "blue")]
    assert requests.get(f"http://127.0.0.1:{served.port}/version", timeout=5).json()


def test_replace_good_and_broken_under_load_fails_no_request(plane, docker_engine, tmp_path):
    target = make_target()
    target.create("load-ep", str(example_model_dir()))
    before = _predict(target, "load-ep")
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def load() -> None:
        t = make_target()
        while not stop.is_set():
            try:
                t.invoke("load-ep", _body())
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
            count[0] += 1
    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        broken = tmp_path / "broken"
        shutil.copytree(example_model_dir(), broken)
        for pkl in broken.rglob("*.pkl"):
            pkl.write_bytes(b"not a pickle")
        snapshot = plane.inventory()
        with pytest.raises(DeploymentFailedError) as info:
            target.replace("load-ep", str(broken))
        message = str(info.value)
        assert "exited" in message or "probe failed" in message
        assert "last lines of green's log" in message  # docker logs of the new container
        assert plane.inventory() == snapshot
        assert [c.labels[_docker.DEPLOYMENT_LABEL] for c in _own(docker_engine, plane)] == [
            "load-ep/blue"]
        v2 = str(example_model_dir("classifier_v2"))
        dep = make_target(traffic_steps="50,100").replace("load-ep", v2)
        assert dep.model_uri == v2
    finally:
        stop.set()
        th.join()
    assert count[0] > 20 and failures == [], failures[:3]
    assert _predict(target, "load-ep") != before  # classifier_v2 answers the opposite
    assert [c.labels[_docker.DEPLOYMENT_LABEL] for c in _own(docker_engine, plane)] == [
        "load-ep/green"]


def test_mirror_then_steps(plane):
    target = make_target()
    target.create("bg-ep", str(example_model_dir()))
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            ep = plane.endpoints.get("bg-ep")
            if ep:
                props = ep["properties"]
                snap = {**{f"m:{k}": v for k, v in (props.get("mirrorTraffic") or {}).items()},
                        **(props.get("traffic") or {})}
                if not seen or seen[-1] != snap:
                    seen.append(snap)
            time.sleep(0.02)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        make_target(mirror_percent=50, mirror_seconds=1, traffic_steps="25,100").replace(
            "bg-ep", str(example_model_dir("classifier_v2")))
        for _ in range(3):  # traffic now all on green
            _predict(target, "bg-ep")
    finally:
        stop.set()
        t.join()
    assert {"blue": 100, "m:green": 50} in seen
    assert {"blue": 75, "green": 25} in seen
    assert seen[-1] in ({"green": 100}, {"blue": 0, "green": 100})
    assert ("bg-ep", "blue") not in plane.running()


def test_interrupt_mid_shift_returns_traffic_and_removes_the_container(plane, docker_engine,
                                                                       monkeypatch):
    from mldeploy.plugins.azureml import _ops

    target = make_target(traffic_steps="10,50,100")
    target.create("int-ep", str(example_model_dir()))
    before = plane.inventory()
    real = _ops.Ops.set_traffic

    def set_traffic(self, name, traffic, mirror):
        if traffic.get("green") == 50:
            raise KeyboardInterrupt
        return real(self, name, traffic, mirror)
    monkeypatch.setattr(_ops.Ops, "set_traffic", set_traffic)
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("int-ep", str(example_model_dir("classifier_v2")))
    monkeypatch.setattr(_ops.Ops, "set_traffic", real)
    assert "interrupted" in info.value.message
    assert plane.inventory() == before
    assert plane.endpoints["int-ep"]["properties"]["traffic"] == {"blue": 100}
    assert [c.labels[_docker.DEPLOYMENT_LABEL] for c in _own(docker_engine, plane)] == [
        "int-ep/blue"]
    assert _predict(target, "int-ep")


def test_a_second_delete_finds_nothing_and_no_container_is_left(plane, docker_engine):
    target = make_target()
    target.create("del-ep", str(example_model_dir()))
    first = target.delete("del-ep")
    assert first.existed and any(r.kind == "model" for r in first.removed)
    second = target.delete("del-ep")
    assert not second.existed
    assert not [c for c in _own(docker_engine, plane)
                if c.labels[_docker.DEPLOYMENT_LABEL].startswith("del-ep/")]


# -- 3. the image builder's image pushed to a registry with ACR's token exchange ------------------

@pytest.fixture
def acr(plane, docker_engine):
    from mldeploy.plugins.azureml.testing._acr import FakeACR

    registry = FakeACR(plane.cert, plane.key, {plane.token}).start()
    yield registry
    for name in list(plane.endpoints):  # their containers run the pushed tags: stop them first
        make_target().delete(name)
    registry.stop()
    for image in docker_engine.images.list(name=f"{registry.login_server}/*"):
        for tag in image.tags:  # untag only what this registry's pushes named
            if tag.startswith(registry.login_server + "/"):
                docker_engine.images.remove(tag)


def test_built_image_is_pushed_with_acr_tokens_and_run_by_digest(plane, acr, docker_engine,
                                                                  base_image):
    target = make_target(image=None, registry=acr.login_server,
                         build={"base_image": base_image})
    target.create("push-ep", str(example_model_dir()))
    env_id = plane.deployments[("push-ep", "blue")]["properties"]["environmentId"]
    env = plane.environments[tuple(env_id.split("/environments/")[1].split("/versions/"))]
    pushed = env["properties"]["image"]
    repo, _, digest = pushed.partition("@")
    assert repo == f"{acr.login_server}/push-ep" and digest.startswith("sha256:")
    assert acr.exchanges == [200]  # the Azure AD token exchanged once for a refresh token
    assert acr.refused  # the engine was challenged and came back with a bearer token
    assert digest in acr.tags("push-ep").values()
    assert pushed in docker_engine.images.get(pushed).attrs["RepoDigests"]
    (c,) = [c for c in _own(docker_engine, plane)
            if c.labels[_docker.DEPLOYMENT_LABEL] == "push-ep/blue"]
    assert c.attrs["Config"]["Image"] == pushed  # run by the pushed reference, never pulled
    assert not acr.pulled
    assert isinstance(_predict(target, "push-ep"), list)


def test_a_refused_aad_token_is_one_clear_error(plane, acr, base_image):
    from mldeploy.errors import MldeployError

    acr.aad_tokens = {"only-another-tenants-token"}
    before = plane.inventory()
    target = make_target(image=None, registry=acr.login_server,
                         build={"base_image": base_image})
    with pytest.raises(MldeployError) as info:
        target.create("stale-ep", str(example_model_dir()))
    err = info.value
    assert "refused the Azure AD token (401" in err.message
    assert "az login" in (err.hint or "")
    assert plane.token not in str(err) and plane.token not in (err.hint or "")
    assert acr.exchanges == [401] and plane.inventory() == before
