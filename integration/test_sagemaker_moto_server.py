"""The SageMaker target against a moto server over a socket on 127.0.0.1, configured only through
the standard ``AWS_ENDPOINT_URL`` variables (so the same commands work against real AWS), with
mldeploy.testing's SageMaker extension active in the server."""

import json
import subprocess
import sys

import boto3
import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.registry import get_target
from mldeploy.target import Status
from mldeploy.testing.aws import apply_env, emulator_env, moto_server, sagemaker_inventory
from mldeploy.testing.conformance import TargetConformance, example_model_dir
from mldeploy.testing.moto_sagemaker import SageMakerEmulator

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy-serve:1"
BUCKET = "mldeploy-it"
BASE = {"execution_role_arn": ROLE, "image_uri": IMAGE, "bucket": BUCKET,
        "poll_interval_seconds": 0.05, "timeout_seconds": 20}
MODEL = str(example_model_dir())
BODY = (example_model_dir() / "serving_input_example.json").read_bytes()


@pytest.fixture(scope="module")
def server():
    try:
        with moto_server() as url:
            yield url
    except OSError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot start a moto server on 127.0.0.1: {exc}")


@pytest.fixture
def emulator(server, monkeypatch):
    import requests

    apply_env(monkeypatch, emulator_env(server))
    requests.post(f"{server}/moto-api/reset", timeout=10).raise_for_status()
    with SageMakerEmulator(creating_seconds=0.1, updating_seconds=0.1) as em:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield em


@pytest.fixture
def session(emulator):
    return boto3.Session()


class TestConformanceOverMotoServer(TargetConformance):
    @pytest.fixture
    def target(self, emulator):
        return get_target("sagemaker:/us-east-1", BASE)   # no clients handed in: env only

    @pytest.fixture
    def inventory(self, session):
        return lambda: sagemaker_inventory(session)

    @pytest.fixture
    def fail_next_deploy(self, emulator):
        def fail(reason):
            emulator.fail_next_create(reason)
            emulator.fail_next_update(reason)
        return fail


def test_plain_boto3_runtime_client_reaches_the_deployed_endpoint(emulator, server):
    dep = get_target("sagemaker", BASE).create("plain", MODEL)
    assert dep.status is Status.READY
    runtime = boto3.client("sagemaker-runtime")
    assert runtime.meta.endpoint_url == server
    resp = runtime.invoke_endpoint(EndpointName="plain", ContentType="application/json",
                                   Body=BODY)
    rows = len(json.loads(BODY)["dataframe_split"]["data"])
    preds = json.loads(resp["Body"].read())["predictions"]
    assert len(preds) == rows and preds[0].startswith("plain-m-")


def test_failed_replace_over_the_wire_leaves_old_serving(emulator, session, tmp_path):
    import shutil

    t = get_target("sagemaker", BASE)
    t.create("wire", MODEL)
    before = sagemaker_inventory(session)
    other = tmp_path / "m2"
    shutil.copytree(MODEL, other)
    (other / "x.txt").write_text("2")
    emulator.fail_next_update("container failed ping")
    with pytest.raises(DeploymentFailedError, match="container failed ping") as info:
        t.replace("wire", str(other))
    assert info.value.leftover == [] and sagemaker_inventory(session) == before
    assert t.get("wire").model_uri == MODEL


def test_cli_in_a_subprocess_against_the_server(emulator, server, tmp_path):
    """The installed `mldeploy` entry point, in its own process, configured only by env."""
    import os

    env = {**os.environ, **emulator_env(server)}
    conf = [f"-Cexecution_role_arn={ROLE}", f"-Cimage_uri={IMAGE}", f"-Cbucket={BUCKET}",
            "-Cpoll_interval_seconds=0.05"]
    run = [sys.executable, "-m", "mldeploy.cli"]
    out = subprocess.run([*run, "deploy", "-t", "sagemaker", "-n", "sub", "-m", MODEL, *conf],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "ready"
    assert "sub: Creating" in out.stderr and "sub: InService" in out.stderr
    out = subprocess.run([*run, "get", "-t", "sagemaker", "-n", "nope"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""  # not found: bad input
    assert out.stderr.strip().splitlines() == [
        "error: no SageMaker endpoint named 'nope' in us-east-1 — mldeploy list --target "
        "sagemaker shows them"]
