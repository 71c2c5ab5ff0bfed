"""The Azure ML target deploying models from an MLflow model registry (a local file store):
the Azure model asset takes its name (and version, when the URI names one) from the registry
URI; a replace removes the old deployment's model version, a delete the endpoint's, but never a
version another endpoint's deployment runs.

Same world as integration/test_azureml_sdk.py: the real azure-ai-ml SDK against the
control-plane fake (in-process serving) and Azurite."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed")

from mldeploy.plugins.azureml import testing as kit  # noqa: E402
from mldeploy.target import ProgressEvent  # noqa: E402
from mldeploy.testing.conformance import example_model_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parent.parent
SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-mldeploy", "ws-registry"
LOCATION = f"{SUB}/{RG}/{WS}"
IMAGE = "fakeacr.azurecr.io/mldeploy/model:given"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = kit.azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed (bash scripts/install-azurite.sh; needs npm)")
    with kit.workspace(binary, tmp_path_factory.mktemp("azure-registry"), SUB, RG, WS) as plane:
        yield plane


@pytest.fixture
def plane(world):
    yield world
    assert not world.unknown, f"the SDK called routes the fake lacks: {world.unknown}"
    for name in list(world.endpoints):
        make_target().delete(name)
    world.models.clear()
    world.model_containers.clear()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An MLflow file store with ``churn`` versions 1 (classifier) and 2 (classifier_v2) and
    the alias ``champion`` on 2; MLFLOW_TRACKING_URI points at it for the test."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("exp")
    client.create_registered_model("churn")
    for model in ("classifier", "classifier_v2"):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifacts(run_id, str(example_model_dir(model)), "model")
        client.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
        client.set_terminated(run_id)
    client.set_registered_model_alias("churn", "champion", "2")
    return SimpleNamespace(uri=uri, client=client)


def make_target(events: list[ProgressEvent] | None = None, **cfg):
    from mldeploy.plugins.azureml.target import AzureMLTarget

    config = {"image": IMAGE, "poll_interval_seconds": 0, "mirror_seconds": 0,
              "timeout_seconds": 120, **cfg}
    return AzureMLTarget(config, location=LOCATION,
                         progress=None if events is None else events.append)


def _assets(dep) -> list[tuple[str, str]]:
    return [tuple(r.id.split("/models/")[1].split("/versions/"))
            for r in dep.resources if r.kind == "model"]


def _body() -> bytes:
    return (example_model_dir() / "serving_input_example.json").read_bytes()


def test_a_registry_uri_names_the_model_asset(plane, registry):
    target = make_target()
    dep = target.create("reg-ep", "models:/churn/2")
    assert _assets(dep) == [("churn", "2")]
    stored = plane.models["churn"]["2"]["properties"]
    assert stored["modelType"] == "mlflow_model"
    assert stored["tags"]["mldeploy.model-uri"] == "models:/churn/2"
    v2 = target.invoke("reg-ep", _body()).predictions
    dep = target.replace("reg-ep", "models:/churn/1")
    assert _assets(dep) == [("churn", "1")]  # the old deployment's version went with it
    assert list(plane.models["churn"]) == ["1"]
    assert [v.model_uri for v in dep.variants] == ["models:/churn/1"]
    assert target.invoke("reg-ep", _body()).predictions != v2  # version 1 is the other model
    target.delete("reg-ep")
    assert not plane.models.get("churn")  # the versions mldeploy registered are gone


def test_a_replace_to_another_model_name_leaves_no_version_behind(plane, registry):
    target = make_target()
    target.create("rename-ep", "models:/churn/1")
    dep = target.replace("rename-ep", str(example_model_dir("classifier_v2")))
    assert _assets(dep) == [("rename-ep", "1")]
    assert not plane.models.get("churn")  # no deployment names 'churn' any more: removed now
    target.delete("rename-ep")
    assert not plane.models.get("rename-ep")


def test_a_registered_version_is_reused_not_registered_again(plane, registry):
    events: list[ProgressEvent] = []
    make_target().create("reg-a", "models:/churn/2")
    make_target(events).create("reg-b", "models:/churn/2")
    assert any("model churn:2 is registered already" in e.message for e in events)
    assert list(plane.models["churn"]) == ["2"]
    events.clear()
    first = make_target(events).delete("reg-a")  # reg-b still runs the version reg-a registered
    assert not [r for r in first.removed if r.kind == "model"] and not first.leftover
    assert "keeping model churn:2: another endpoint runs it" in [e.message for e in events]
    assert make_target().invoke("reg-b", _body()).predictions
    second = make_target().delete("reg-b")
    assert [r.id.rsplit("/models/", 1)[1] for r in second.removed if r.kind == "model"] == [
        "churn/versions/2"]
    assert not plane.models.get("churn")


@pytest.mark.parametrize("uri", ["models:/churn@champion", "models:/churn/latest"])
def test_an_alias_or_stage_takes_the_name_and_the_next_free_version(plane, registry, uri):
    dep = make_target().create("reg-alias", uri)
    assert _assets(dep) == [("churn", "1")]  # Azure's next free version, not MLflow's
    assert plane.models["churn"]["1"]["properties"]["tags"]["mldeploy.model-uri"] == uri

