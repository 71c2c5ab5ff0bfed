"""mldeploy's targets as MLflow deployments plugins, driven the way MLflow drives a plugin: its own
plugin loader, ``get_deploy_client`` and its real CLI (``mlflow.deployments.cli`` through click's
CliRunner, as MLflow's ``tests/deployments/test_cli.py`` exercises its fake plugin). The SageMaker
target runs against moto extended by mldeploy's emulator."""

import json
import os

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

pytest.importorskip("mlflow.deployments")

from mlflow.deployments import PredictionsResponse, get_deploy_client  # noqa: E402
from mlflow.deployments import cli as mlflow_cli  # noqa: E402
from mlflow.deployments.plugin_manager import DeploymentPlugins  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from mldeploy.mlflow_deployments import parse_target_uri, run_local_command  # noqa: E402
from mldeploy.testing.conformance import example_model_dir  # noqa: E402
from mldeploy.testing.moto_sagemaker import (  # noqa: E402
    SageMakerEmulator,
    reset_backends,
    sagemaker_inventory,
)

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy-serve:1"
BUCKET = "mldeploy-test"
# What `-C k=v` gives a plugin: strings only.
CONFIG = {"execution_role_arn": ROLE, "image_uri": IMAGE, "bucket": BUCKET,
          "poll_interval_seconds": "0.01", "timeout_seconds": "5"}
TARGET = "mldeploy-sagemaker:/us-east-1"
ROW = {f"f{i}": 0.5 for i in range(20)}


@pytest.fixture(scope="module")
def mocked():
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE")):
                mp.delenv(var)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            yield


@pytest.fixture
def emulator(mocked):
    reset_backends()
    with SageMakerEmulator() as em:
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield em


@pytest.fixture
def model():
    return str(example_model_dir())


def inventory():
    return sagemaker_inventory(boto3.Session(region_name="us-east-1"))


def models():
    return {i for i in inventory() if ":model/" in i}


EMPTY = {f"s3://{BUCKET}"}  # what is left once a deployment is deleted: the bucket the test made


# -- the plugin contract MLflow's loader checks ------------------------------------------------

@pytest.mark.parametrize("target", ["local", "sagemaker", "kubernetes"])
def test_mlflow_loads_every_target_as_a_valid_plugin(target):
    module = DeploymentPlugins()[f"mldeploy-{target}"]  # raises unless exactly one client class
    assert callable(module.run_local) and callable(module.target_help)
    text = module.target_help()
    assert f"mldeploy-{target}" in text and "Unknown -C keys are errors" in text


def test_target_help_lists_the_typed_config_keys():
    text = DeploymentPlugins()["mldeploy-sagemaker"].target_help()
    for key in ("execution_role_arn", "instance_type", "image_uri"):
        assert f"  {key}" in text


def test_target_uri_maps_to_mldeploys_spec():
    assert parse_target_uri("mldeploy-sagemaker:/eu-west-1", "sagemaker") == "sagemaker:/eu-west-1"
    assert parse_target_uri("mldeploy-local", "local") == "local"
    assert parse_target_uri("mldeploy-kubernetes:/ctx/ns", "kubernetes") == "kubernetes:/ctx/ns"


# -- get_deploy_client ---------------------------------------------------------------------------

def test_client_create_update_get_list_predict_delete(emulator, model, tmp_path):
    client = get_deploy_client(TARGET)
    created = client.create_deployment("churn", model, config=CONFIG)
    assert created["name"] == "churn" and created["flavor"] == "python_function"
    assert created["status"] == "ready"

    # update without a model URI keeps the model; with one it replaces (one model left after)
    before = models()
    updated = client.update_deployment("churn", config=CONFIG)
    assert updated["name"] == "churn" and updated["flavor"] == "python_function"
    other = tmp_path / "v2"
    import shutil
    shutil.copytree(model, other)
    (other / "README.txt").write_text("the second version")  # other files: another model
    client.update_deployment("churn", model_uri=str(other), config=CONFIG)
    after = models()
    assert len(after) == len(before) == 1 and after != before

    got = client.get_deployment("churn")
    assert got["name"] == "churn" and got["flavor"] == "python_function"
    assert [d["name"] for d in client.list_deployments()] == ["churn"]

    import pandas as pd
    resp = client.predict("churn", pd.DataFrame([ROW, ROW]))
    assert isinstance(resp, PredictionsResponse)
    assert len(resp.get_predictions()) == 2

    assert client.delete_deployment("churn") is None
    assert client.delete_deployment("churn") is None  # idempotent
    assert client.list_deployments() == []
    assert inventory() == EMPTY


def test_unknown_config_key_is_an_mlflow_exception_naming_the_nearest(emulator, model):
    client = get_deploy_client(TARGET)
    with pytest.raises(MlflowException) as info:
        client.create_deployment("churn", model, config={**CONFIG, "instance_typ": "ml.m5.large"})
    assert "instance_type" in info.value.message
    assert client.list_deployments() == []


def test_missing_deployment_is_resource_does_not_exist(emulator):
    client = get_deploy_client(TARGET)
    with pytest.raises(MlflowException) as info:
        client.get_deployment("ghost")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "Traceback" not in info.value.message


def test_other_flavors_are_refused(emulator, model):
    with pytest.raises(MlflowException, match="python_function"):
        get_deploy_client(TARGET).create_deployment("churn", model, flavor="sklearn",
                                                    config=CONFIG)


def test_endpoint_maps_to_variants(emulator, model):
    client = get_deploy_client(TARGET)
    client.create_deployment("blue", model, config=CONFIG, endpoint="churn")
    client.create_deployment("green", model, config={**CONFIG, "initial_weight": "1"},
                             endpoint="churn")
    names = sorted(d["name"] for d in client.list_deployments(endpoint="churn"))
    assert names == ["blue", "green"]
    client.update_endpoint("churn", config={"traffic": "blue=9,green=1"})
    weights = {d["name"]: d["weight"] for d in client.list_deployments(endpoint="churn")}
    assert weights == {"blue": 9.0, "green": 1.0}
    assert client.get_deployment("green", endpoint="churn")["weight"] == 1.0
    assert [d["name"] for d in client.list_endpoints()] == ["churn"]
    client.delete_endpoint("churn")
    assert client.list_endpoints() == []


def test_kubernetes_has_no_variants_for_endpoint_arguments():
    client = get_deploy_client("mldeploy-kubernetes")
    with pytest.raises(MlflowException, match="omit --endpoint"):
        client.create_deployment("blue", "/nowhere", endpoint="churn")


# -- MLflow's own CLI ----------------------------------------------------------------------------

def _run(*args):
    result = CliRunner().invoke(mlflow_cli.commands, list(args), catch_exceptions=True)
    return result


def _c():
    return [arg for k, v in CONFIG.items() for arg in ("-C", f"{k}={v}")]


def test_mlflow_cli_drives_the_sagemaker_target(emulator, model, tmp_path):
    r = _run("create", "-t", TARGET, "--name", "churn", "-m", model, *_c())
    assert r.exit_code == 0, r.output
    assert "python_function deployment churn is created" in r.output

    r = _run("update", "-t", TARGET, "--name", "churn", "-m", model, *_c())
    assert r.exit_code == 0, r.output
    assert "Deployment churn is updated (with flavor python_function)" in r.output

    r = _run("get", "-t", TARGET, "--name", "churn")
    assert r.exit_code == 0 and "name: churn" in r.output

    r = _run("list", "-t", TARGET)
    assert r.exit_code == 0 and "churn" in r.output

    inp = tmp_path / "in.json"
    inp.write_text(json.dumps([ROW, ROW, ROW]))
    out = tmp_path / "out.json"
    r = _run("predict", "-t", TARGET, "--name", "churn", "--input-path", str(inp),
             "--output-path", str(out))
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())["predictions"]) == 3

    r = _run("help", "-t", "mldeploy-sagemaker")
    assert r.exit_code == 0 and "execution_role_arn" in r.output

    for _ in range(2):  # idempotent
        r = _run("delete", "-t", TARGET, "--name", "churn")
        assert r.exit_code == 0, r.output
    assert inventory() == EMPTY


def test_mlflow_cli_reports_mldeploys_message(emulator, model):
    r = _run("create", "-t", TARGET, "--name", "churn", "-m", model, *_c(), "-C", "bucket_nam=x")
    assert r.exit_code != 0
    assert isinstance(r.exception, MlflowException)
    assert "bucket_name" in r.exception.message or "bucket" in r.exception.message


def test_run_local_command_is_mldeploy_serve():
    argv = run_local_command("/m", {"port": "5001", "workers": "1"})
    assert argv[1:6] == ["-m", "mldeploy.cli", "serve", "-m", "/m"]
    assert argv[6:] == ["--port", "5001", "--workers", "1"]
    from mldeploy.errors import UsageError
    with pytest.raises(UsageError, match="did you mean 'port'"):
        run_local_command("/m", {"prot": "1"})
