"""Side by side: MLflow's own SageMaker deployment client (``mlflow.deployments`` "sagemaker",
shipped in mlflow-skinny) and mldeploy, on the same failing replace, in the same moto server.
Each tool creates an endpoint, then replaces its model while SageMaker (the emulator) rolls the
update back; we count what each leaves behind.

MLflow waits at least 20 s before its first status check and polls every 5 s, so this test takes
about a minute; it is the peer's own timing, left as it is.
"""

import logging
import shutil

import boto3
import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.registry import get_target
from mldeploy.testing.aws import apply_env, emulator_env, moto_server, sagemaker_inventory
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.moto_sagemaker import SageMakerEmulator

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
BUCKET = "side-by-side"
MODEL = str(example_model_dir())
REASON = "The primary container for production variant did not pass the ping health check."


@pytest.fixture(scope="module")
def server():
    try:
        with moto_server() as url:
            yield url
    except OSError as exc:  # pragma: no cover
        pytest.skip(f"cannot start a moto server on 127.0.0.1: {exc}")


@pytest.fixture
def env(server, monkeypatch):
    apply_env(monkeypatch, emulator_env(server))
    # AWS-accurate deletes: MLflow is not held to mldeploy's stricter emulator rules
    with SageMakerEmulator(strict=False) as em:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield em


@pytest.fixture
def model2(tmp_path):
    dst = tmp_path / "model-v2"
    shutil.copytree(MODEL, dst)
    (dst / "v2.txt").write_text("second version")
    return str(dst)


def mlflow_client():
    try:
        from mlflow.deployments import get_deploy_client

        return get_deploy_client("sagemaker:/us-east-1")
    except Exception as exc:  # pragma: no cover - mlflow-skinny without the sagemaker client
        pytest.skip(f"MLflow's SageMaker deployment client is not available: {exc}")


def orphans(after, before, endpoint):
    """New resources that nothing serves: what a failed replace should never leave."""
    sm = boto3.client("sagemaker")
    ep = sm.describe_endpoint(EndpointName=endpoint)
    cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    serving = {ep["EndpointArn"], cfg["EndpointConfigArn"]}
    for v in cfg["ProductionVariants"]:
        m = sm.describe_model(ModelName=v["ModelName"])
        serving |= {m["ModelArn"], m["PrimaryContainer"]["ModelDataUrl"]}
    return sorted((after - before) - serving)


def test_failing_replace_mlflow_vs_mldeploy(env, model2, capsys):
    session = boto3.Session()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = mlflow_client()
    mlflow_config = {"execution_role_arn": ROLE, "image_url": IMAGE, "bucket": BUCKET,
                     "region_name": "us-east-1", "timeout_seconds": 120}

    # --- MLflow --------------------------------------------------------------------------
    client.create_deployment("mlflow-ep", MODEL, flavor="python_function",
                             config=mlflow_config)
    before = sagemaker_inventory(session)
    old_cfg = boto3.client("sagemaker").describe_endpoint(
        EndpointName="mlflow-ep")["EndpointConfigName"]
    env.fail_next_update(REASON)
    with pytest.raises(Exception) as mlflow_err:
        client.update_deployment("mlflow-ep", model2, flavor="python_function",
                                 config={**mlflow_config, "mode": "replace"})
    mlflow_left = orphans(sagemaker_inventory(session), before, "mlflow-ep")
    ep = boto3.client("sagemaker").describe_endpoint(EndpointName="mlflow-ep")
    assert (ep["EndpointStatus"], ep["EndpointConfigName"]) == ("InService", old_cfg)

    # --- mldeploy ------------------------------------------------------------------------
    ours = get_target("sagemaker:/us-east-1", {"execution_role_arn": ROLE, "image_uri": IMAGE,
                                               "bucket": BUCKET, "poll_interval_seconds": 0.05})
    ours.create("mldeploy-ep", MODEL)
    before = sagemaker_inventory(session)
    old_cfg = boto3.client("sagemaker").describe_endpoint(
        EndpointName="mldeploy-ep")["EndpointConfigName"]
    env.fail_next_update(REASON)
    with pytest.raises(DeploymentFailedError) as our_err:
        ours.replace("mldeploy-ep", model2)
    our_left = orphans(sagemaker_inventory(session), before, "mldeploy-ep")
    ep = boto3.client("sagemaker").describe_endpoint(EndpointName="mldeploy-ep")
    assert (ep["EndpointStatus"], ep["EndpointConfigName"]) == ("InService", old_cfg)

    with capsys.disabled():
        print("\n\nfailed replace, rolled back by SageMaker        orphaned resources")
        print(f"  mlflow {client.__class__.__name__:<36} {len(mlflow_left)}")
        for r in mlflow_left:
            print(f"      {r}")
        print(f"  mldeploy SageMakerTarget                     {len(our_left)}")
        print(f"  mlflow error:   {type(mlflow_err.value).__name__}: "
              f"{str(mlflow_err.value).splitlines()[0][:100]}")
        print(f"  mldeploy error: {our_err.value.message[:100]}\n")

    assert REASON in str(mlflow_err.value), "both tools met the same failure"
    assert REASON in our_err.value.message
    assert our_left == [], "mldeploy removes exactly what its failed replace created"
    assert our_err.value.leftover == [] and len(our_err.value.cleaned) == 3
    # what MLflow 3.17 leaves: the new model, its endpoint config and the uploaded artifact
    kinds = sorted({r.split(":")[5].split("/")[0] if r.startswith("arn:") else "s3-object"
                    for r in mlflow_left})
    assert kinds == ["endpoint-config", "model", "s3-object"], mlflow_left
