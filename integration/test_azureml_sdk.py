"""The Azure ML target on the real azure-ai-ml and azure-identity SDKs, against the control-plane
fake (https on 127.0.0.1, bodies checked with the SDK's REST models, unknown routes fail) and
Azurite (the model upload): the shared conformance suite, blue/green replace with mirrored and
staged traffic, failures rolled back, credentials through DefaultAzureCredential's managed
identity, the private cloud through ARM_CLOUD_METADATA_URL.

The fake serves each deployment with mldeploy's real serving app on the model files it reads back
from Azurite (as Azure mounts them); it does not run the container image itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed")

from mldeploy.errors import (  # noqa: E402
    DeploymentFailedError,
    DeploymentNotFoundError,
    TargetError,
    UsageError,
)
from mldeploy.plugins.azureml import testing as kit  # noqa: E402
from mldeploy.testing.conformance import TargetConformance, example_model_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parent.parent
SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-mldeploy", "ws-mldeploy"
LOCATION = f"{SUB}/{RG}/{WS}"
IMAGE = "fakeacr.azurecr.io/mldeploy/model:given"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = kit.azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed (bash scripts/install-azurite.sh; needs npm)")
    with kit.workspace(binary, tmp_path_factory.mktemp("azure"), SUB, RG, WS) as plane:
        yield plane


@pytest.fixture
def plane(world):
    yield world
    assert not world.unknown, f"the SDK called routes the fake lacks: {world.unknown}"
    with world.lock:
        names = list(world.endpoints)
    for name in names:  # a fresh backend per test
        from mldeploy.plugins.azureml.target import AzureMLTarget

        AzureMLTarget({"poll_interval_seconds": 0}, location=LOCATION).delete(name)
    world.fail_next = None
    world.models.clear()
    world.model_containers.clear()


def make_target(**cfg):
    from mldeploy.plugins.azureml.target import AzureMLTarget

    config = {"image": IMAGE, "poll_interval_seconds": 0, "mirror_seconds": 0,
              "timeout_seconds": 120, **cfg}
    return AzureMLTarget(config, location=LOCATION)


class TestAzureMLConformance(TargetConformance):
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


def _body() -> bytes:
    return (example_model_dir() / "serving_input_example.json").read_bytes()


def _other(tmp_path: Path) -> str:
    import shutil

    dst = tmp_path / "other-model"
    shutil.copytree(example_model_dir(), dst, dirs_exist_ok=True)
    (dst / "README.txt").write_text("another model\n")
    return str(dst)


def test_credentials_come_from_the_managed_identity(plane):
    before = len(plane.identity_calls)
    make_target().list()
    calls = plane.identity_calls[before:]
    assert calls and calls[0]["header"] == "fake-identity-header"
    assert calls[0]["resource"].rstrip("/") == plane.base_url.rstrip("/")


def test_a_stale_token_is_a_clear_error(plane):
    target = make_target()
    target.list()  # DefaultAzureCredential now holds the managed identity's token
    saved, plane.token = plane.token, "rotated-token"  # the service no longer accepts it
    try:
        with pytest.raises(TargetError) as info:
            target.list()
        assert "credential" in info.value.message and "DefaultAzureCredential" in info.value.hint
        assert saved not in str(info.value)
    finally:
        plane.token = saved


def test_the_fake_fails_loudly_on_an_unknown_route(plane):
    import requests

    url = (f"{plane.base_url}subscriptions/{SUB}/resourceGroups/{RG}/providers/"
           f"Microsoft.MachineLearningServices/workspaces/{WS}/batchEndpoints?api-version=2023-10-01")
    r = requests.get(url, headers={"Authorization": f"Bearer {plane.token}"}, timeout=10)
    assert r.status_code == 501 and "FakeUnknownRoute" in r.text
    assert plane.unknown and "batchEndpoints" in plane.unknown[-1]
    plane.unknown.clear()


def test_wrong_metadata_url_is_not_silently_public_azure(plane, monkeypatch):
    monkeypatch.setenv("ARM_CLOUD_METADATA_URL", plane.base_url + "metadata/nothing-here")
    with pytest.raises(UsageError) as info:
        make_target().list()
    assert "ARM_CLOUD_METADATA_URL" in info.value.message
    assert ("GET", "/metadata/nothing-here") in plane.requests
    plane.unknown.clear()


def test_model_is_registered_as_mlflow_model_with_tags(plane):
    dep = make_target().create("tags-ep", str(example_model_dir()))
    (model,) = [r for r in dep.resources if r.kind == "model"]
    name, version = model.id.split("/models/")[1].split("/versions/")
    stored = plane.models[name][version]["properties"]
    assert stored["modelType"] == "mlflow_model"
    assert stored["tags"]["mldeploy.model-uri"] == str(example_model_dir())
    assert "mldeploy.version" in stored["tags"]
    # the custom container: mldeploy's image, probes on /ping, scoring on /invocations
    (d,) = [v for (e, _), v in plane.deployments.items() if e == "tags-ep"]
    env_id = d["properties"]["environmentId"]
    env = plane.environments[tuple(env_id.split("/environments/")[1].split("/versions/"))]
    assert env["properties"]["image"] == IMAGE
    routes = env["properties"]["inferenceConfig"]
    assert routes["scoringRoute"] == {"port": 8080, "path": "/invocations"}
    assert routes["readinessRoute"]["path"] == "/ping"
    assert d["properties"]["livenessProbe"]["initialDelay"] == "PT30S"


def test_replace_is_blue_green_with_mirror_then_steps(plane, tmp_path):
    target = make_target()
    target.create("bg-ep", str(example_model_dir()))
    seen: list[dict[str, int]] = []
    original = plane.endpoints

    def watch():
        while not stop.is_set():
            ep = original.get("bg-ep")
            if ep:
                snap = {**{f"m:{k}": v for k, v in ep["properties"].get("mirrorTraffic",
                                                                          {}).items()},
                        **ep["properties"].get("traffic", {})}
                if not seen or seen[-1] != snap:
                    seen.append(snap)
            time.sleep(0.02)
    stop = threading.Event()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        dep = make_target(mirror_percent=20, traffic_steps="25,100").replace(
            "bg-ep", _other(tmp_path))
    finally:
        stop.set()
        t.join()
    assert [v.name for v in dep.variants] == ["green"]
    assert {"blue": 100, "m:green": 20} in seen
    assert {"blue": 75, "green": 25} in seen
    assert seen[-1] == {"green": 100} or seen[-1] == {"blue": 0, "green": 100}
    assert ("bg-ep", "blue") not in plane.running()


def test_failed_replace_under_load_keeps_serving(plane, tmp_path):
    target = make_target()
    target.create("load-ep", str(example_model_dir()))
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def load():
        t = make_target()
        while not stop.is_set() and count[0] < 400:
            try:
                t.invoke("load-ep", _body())
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
            count[0] += 1
    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        before = plane.inventory()
        plane.fail_next = "the model crashed in its readiness probe"
        with pytest.raises(DeploymentFailedError) as info:
            target.replace("load-ep", _other(tmp_path))
        assert "readiness probe" in str(info.value)
        assert "Liveness probe failed" in str(info.value)  # the new container's log tail
        assert plane.inventory() == before
        good = make_target(traffic_steps="50,100").replace("load-ep", _other(tmp_path))
        assert good.model_uri == _other(tmp_path)
    finally:
        stop.set()
        th.join()
    assert count[0] > 0 and failures == []


def test_broken_model_fails_its_probes_and_is_rolled_back(plane, tmp_path):
    import shutil

    target = make_target()
    target.create("broken-ep", str(example_model_dir()))
    before = plane.inventory()
    broken = tmp_path / "broken"
    shutil.copytree(example_model_dir(), broken)
    for pkl in broken.rglob("*.pkl"):
        pkl.write_bytes(b"not a pickle")
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("broken-ep", str(broken))
    assert "readiness probe" in str(info.value)
    assert plane.inventory() == before
    assert target.get("broken-ep").model_uri == str(example_model_dir())
    assert isinstance(target.invoke("broken-ep", _body()).predictions, list)


def test_interrupt_mid_shift_returns_traffic(plane, tmp_path, monkeypatch):
    from mldeploy.plugins.azureml import _ops

    target = make_target(traffic_steps="10,50,100")
    target.create("int-ep", str(example_model_dir()))
    before = plane.inventory()
    real = _ops.Ops.set_traffic
    calls = []

    def set_traffic(self, name, traffic, mirror):
        calls.append(dict(traffic))
        if traffic.get("green") == 50:
            raise KeyboardInterrupt
        return real(self, name, traffic, mirror)
    monkeypatch.setattr(_ops.Ops, "set_traffic", set_traffic)
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("int-ep", _other(tmp_path))
    assert "interrupted" in info.value.message
    monkeypatch.setattr(_ops.Ops, "set_traffic", real)
    assert plane.inventory() == before
    assert plane.endpoints["int-ep"]["properties"]["traffic"] == {"blue": 100}
    assert {"blue": 90, "green": 10} in calls


def test_add_traffic_and_variant_invoke(plane, tmp_path):
    target = make_target(add_percent=30)
    target.create("add-ep", str(example_model_dir()))
    dep = target.add("add-ep", _other(tmp_path))
    assert [(v.name, v.weight) for v in dep.variants] == [("blue", 0.7), ("green", 0.3)]
    pred = target.invoke("add-ep", _body(), variant="GREEN")
    assert plane.scored[-1] == ("add-ep", "green") and pred.variant == "GREEN"
    dep = target.traffic("add-ep", {"Blue": 1, "green": 3})
    assert dep.details["traffic"] == {"blue": 25, "green": 75}
    dep = target.traffic("add-ep", {"blue": 0, "green": 1})
    assert [(v.name, v.weight) for v in dep.variants] == [("blue", 0.0), ("green", 1.0)]
    # the SDK's class-level header dict must not carry the variant into a later call
    plane.scored.clear()
    for _ in range(5):
        target.invoke("add-ep", _body())
    assert set(plane.scored) == {("add-ep", "green")}
    with pytest.raises(UsageError):
        target.invoke("add-ep", _body(), variant="nope")


def test_token_auth_mode(plane):
    target = make_target(auth_mode="aml_token")
    target.create("tok-ep", str(example_model_dir()))
    assert isinstance(target.invoke("tok-ep", _body()).predictions, list)


def test_built_image_goes_through_the_image_service(plane):
    from mldeploy.plugins.azureml._client import connect

    built = []

    def builder(req, log):
        built.append(req)
        return f"{req.reference}@sha256:{'0' * 64}"

    target = make_target(image=None, build={"engine": "flask"})
    clients = connect(SUB, RG, WS, None)
    clients.build_image = builder
    target.clients = clients
    target.create("built-ep", str(example_model_dir()))
    (req,) = built
    assert req.reference.startswith("fakeacr.azurecr.io/built-ep:")  # the workspace's ACR
    env = next(iter(plane.environments.values()))
    assert any(e["properties"]["image"] == f"{req.reference}@sha256:{'0' * 64}"
               for e in plane.environments.values()), env


def test_replace_of_a_missing_endpoint_creates_nothing(plane):
    before = plane.inventory()
    with pytest.raises(DeploymentNotFoundError):
        make_target().replace("nothing-here", str(example_model_dir()))
    assert plane.inventory() == before


def test_mlflow_deployments_client(plane, tmp_path):
    from mlflow.deployments import get_deploy_client

    client = get_deploy_client(f"mldeploy-azureml:/{LOCATION}")
    made = client.create_deployment("mlflow-ep", str(example_model_dir()),
                                    config={"image": IMAGE, "poll_interval_seconds": "0"})
    assert made["name"] == "mlflow-ep" and "flavor" in made
    updated = client.update_deployment("mlflow-ep", _other(tmp_path),
                                       config={"image": IMAGE, "poll_interval_seconds": "0"})
    assert updated["flavor"] and updated["name"] == "mlflow-ep"
    assert "mlflow-ep" in [d["name"] for d in client.list_deployments()]
    client.delete_deployment("mlflow-ep")


def test_registry_uri_names_the_model_asset_and_delete_removes_it(plane, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store)
    client = MlflowClient(store, store)
    run = client.create_run(client.create_experiment("azure")).info
    for version, model in ((1, "classifier"), (2, "classifier_v2")):
        client.log_artifacts(run.run_id, str(example_model_dir(model)), f"model{version}")
    client.create_registered_model("Churn Model")
    for version in (1, 2):
        client.create_model_version("Churn Model", f"{run.artifact_uri}/model{version}",
                                    run_id=run.run_id)
    target = make_target()
    dep = target.create("reg-ep", "models:/Churn Model/1")
    assert any(r.id.endswith("/models/Churn-Model/versions/1") for r in dep.resources)
    stored = plane.models["Churn-Model"]["1"]["properties"]
    assert stored["tags"]["mldeploy.model-uri"] == "models:/Churn Model/1"
    target.replace("reg-ep", "models:/Churn Model/2")
    assert set(plane.models["Churn-Model"]) == {"2"}  # the replaced deployment's version went
    gone = target.delete("reg-ep")
    assert not gone.leftover and "Churn-Model" not in plane.models
    assert not target.delete("reg-ep").existed
