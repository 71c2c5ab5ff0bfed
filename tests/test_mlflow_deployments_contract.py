"""The rest of #14's MLflow-deployments contract, each bullet driven through MLflow's own CLI
(``mlflow.deployments.cli`` via CliRunner) or ``get_deploy_client`` against the SageMaker target on
moto extended by mldeploy's emulator: ``--endpoint`` on every verb that takes it, the endpoint
verbs mapped onto variants and traffic, idempotent deletes, errors as ``MlflowException`` with
mldeploy's message *and* hint, ``update`` keeping the settings the user did not pass, and MLflow
(the full package) staying optional."""

import json
import subprocess
import sys

import boto3
import pytest

pytest.importorskip("mlflow.deployments")

# the sibling module's moto + emulator fixtures and constants: one copy for both modules
import test_mlflow_deployments as _sibling  # noqa: E402
from mlflow.deployments import get_deploy_client  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from mldeploy.testing.conformance import example_model_dir  # noqa: E402

MODEL = str(example_model_dir())
BUCKET, CONFIG, ROW, TARGET = _sibling.BUCKET, _sibling.CONFIG, _sibling.ROW, _sibling.TARGET
mocked, emulator, cli = _sibling.mocked, _sibling.emulator, _sibling._run


def c(config):
    return [arg for k, v in config.items() for arg in ("-C", f"{k}={v}")]


def sm():
    return boto3.client("sagemaker", region_name="us-east-1")


# -- --endpoint: variants and traffic through MLflow's real CLI ------------------------------

def test_cli_endpoint_flags_map_to_variants_and_traffic(emulator, tmp_path):
    r = cli("create", "-t", TARGET, "--endpoint", "churn", "--name", "blue", "-m", MODEL,
            *c(CONFIG))
    assert r.exit_code == 0, r.output
    assert "python_function deployment blue is created" in r.output
    r = cli("create", "-t", TARGET, "--endpoint", "churn", "--name", "green", "-m", MODEL,
            *c({**CONFIG, "initial_weight": "1"}))
    assert r.exit_code == 0, r.output
    variants = sm().describe_endpoint(EndpointName="churn")["ProductionVariants"]
    assert sorted(v["VariantName"] for v in variants) == ["blue", "green"]

    r = cli("update-endpoint", "-t", TARGET, "--endpoint", "churn",
            "-C", "traffic=blue=9,green=1")  # '=' inside the value: MLflow splits on the first
    assert r.exit_code == 0, r.output
    weights = {v["VariantName"]: v["CurrentWeight"]
               for v in sm().describe_endpoint(EndpointName="churn")["ProductionVariants"]}
    assert weights == {"blue": 9.0, "green": 1.0}

    r = cli("list", "-t", TARGET, "--endpoint", "churn")
    assert r.exit_code == 0 and "'name': 'blue'" in r.output and "'name': 'green'" in r.output
    r = cli("get", "-t", TARGET, "--endpoint", "churn", "--name", "green")
    assert r.exit_code == 0 and "name: green" in r.output and "weight: 1.0" in r.output
    r = cli("get-endpoint", "-t", TARGET, "--endpoint", "churn")
    assert r.exit_code == 0 and "name: churn" in r.output
    r = cli("list-endpoints", "-t", TARGET)
    assert r.exit_code == 0 and "'name': 'churn'" in r.output

    inp = tmp_path / "in.json"
    inp.write_text(json.dumps([ROW, ROW]))
    out = tmp_path / "out.json"
    r = cli("predict", "-t", TARGET, "--endpoint", "churn", "--input-path", str(inp),
            "--output-path", str(out))
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())["predictions"]) == 2

    # update --endpoint E --name V replaces only that variant's model, keeping the other
    before = {v["VariantName"]: v["ModelName"] for v in sm().describe_endpoint_config(
        EndpointConfigName=sm().describe_endpoint(EndpointName="churn")["EndpointConfigName"]
    )["ProductionVariants"]}
    other = tmp_path / "v2"
    import shutil
    shutil.copytree(MODEL, other)
    (other / "NOTE.txt").write_text("another model")
    r = cli("update", "-t", TARGET, "--endpoint", "churn", "--name", "green", "-m", str(other),
            *c(CONFIG))
    assert r.exit_code == 0, r.output
    after = {v["VariantName"]: v["ModelName"] for v in sm().describe_endpoint_config(
        EndpointConfigName=sm().describe_endpoint(EndpointName="churn")["EndpointConfigName"]
    )["ProductionVariants"]}
    assert after["blue"] == before["blue"] and after["green"] != before["green"]

    for _ in range(2):  # idempotent
        r = cli("delete-endpoint", "-t", TARGET, "--endpoint", "churn")
        assert r.exit_code == 0, r.output
    assert sm().list_endpoints()["Endpoints"] == []


def test_create_endpoint_without_a_model_says_how_to_create_one(emulator):
    # through the client: MLflow's own `create-endpoint` command cannot call any plugin (its
    # click option is --endpoint, its function parameter `name`: a TypeError in MLflow 3.17)
    with pytest.raises(MlflowException) as info:
        get_deploy_client(TARGET).create_endpoint("churn", config={})
    assert "together with its first deployment" in info.value.message
    assert "create --endpoint churn --name NAME -m MODEL_URI" in info.value.message  # the hint
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert sm().list_endpoints()["Endpoints"] == []


def test_delete_of_one_variant_points_at_traffic(emulator):
    client = get_deploy_client(TARGET)
    client.create_deployment("blue", MODEL, config=CONFIG, endpoint="churn")
    with pytest.raises(MlflowException) as info:
        client.delete_deployment("blue", endpoint="churn")
    assert "update-endpoint -C traffic=" in info.value.message
    assert [d["name"] for d in client.list_deployments(endpoint="churn")] == ["blue"]
    with pytest.raises(MlflowException, match="known: blue"):
        client.get_deployment("red", endpoint="churn")
    with pytest.raises(MlflowException, match="traffic=VARIANT=WEIGHT"):
        client.update_endpoint("churn", config={"instance_type": "ml.c5.xlarge"})


# -- errors: MlflowException with mldeploy's message and hint --------------------------------

def test_errors_carry_mldeploys_message_and_hint(emulator):
    client = get_deploy_client(TARGET)
    with pytest.raises(MlflowException) as info:
        client.create_deployment("churn", MODEL, config={**CONFIG, "instance_count": "0"})
    msg = info.value.message
    assert "instance_count" in msg and info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Traceback" not in msg
    with pytest.raises(MlflowException) as info:
        get_deploy_client("mldeploy-sagemaker:/us-east-1").predict("ghost", [ROW])
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST" and "ghost" in info.value.message
    with pytest.raises(MlflowException) as info:
        get_deploy_client(TARGET).predict(None, [ROW])
    assert info.value.message == "no deployment named (pass --name or --endpoint)"
    r = cli("create", "-t", "mldeploy-sagemaker", "--name", "churn", "-m", MODEL,
            "--flavor", "sklearn", *c(CONFIG))
    assert isinstance(r.exception, MlflowException)
    assert r.exception.message == ("flavor 'sklearn' cannot be deployed by mldeploy "
                                   "(mldeploy serves every model as python_function: "
                                   "omit --flavor)")
    assert sm().list_endpoints()["Endpoints"] == []


# -- update keeps what the user did not change ----------------------------------------------

def test_update_keeps_the_settings_the_user_did_not_pass(emulator, tmp_path):
    client = get_deploy_client(TARGET)
    client.create_deployment("churn", MODEL, config={
        **CONFIG, "instance_type": "ml.c5.xlarge", "instance_count": "2",
        "variant_name": "blue", "env.TEAM": "risk", "tags.owner": "risk-team",
        "data_capture_config.destination_s3_uri": f"s3://{BUCKET}/capture"})
    other = tmp_path / "v2"
    import shutil
    shutil.copytree(MODEL, other)
    (other / "NOTE.txt").write_text("another model")
    # MLflow's CLI as a user runs it: only what changes, the model
    r = cli("update", "-t", TARGET, "--name", "churn", "-m", str(other),
            *c({k: CONFIG[k] for k in ("execution_role_arn", "image_uri", "bucket")}))
    assert r.exit_code == 0, r.output
    ep = sm().describe_endpoint(EndpointName="churn")
    config = sm().describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "blue"
    assert variant["InstanceType"] == "ml.c5.xlarge" and variant["InitialInstanceCount"] == 2
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/capture"
    model = sm().describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Environment"]["TEAM"] == "risk"
    tags = {t["Key"]: t["Value"] for t in sm().list_tags(ResourceArn=ep["EndpointArn"])["Tags"]}
    assert tags.get("owner") == "risk-team"
    assert client.get_deployment("churn")["model_uri"] == str(other)
    client.delete_deployment("churn")


# -- MLflow itself stays optional --------------------------------------------------------------

def test_mlflow_is_optional():
    """The full ``mlflow`` package is no core requirement (mlflow-skinny is), and importing
    mldeploy — its API, its CLI, the plugin glue — imports no part of MLflow's deployments."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    core = [Requirement(r) for r in requires("mldeploy") or []]
    core = [r for r in core if not r.marker or "extra" not in str(r.marker)]
    assert "mlflow" not in {r.name.lower() for r in core}
    code = ("import sys, mldeploy, mldeploy.cli, mldeploy.mlflow_deployments; "
            "print(sorted(m for m in sys.modules if m.startswith('mlflow.deployments')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
