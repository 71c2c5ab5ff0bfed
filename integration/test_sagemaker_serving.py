"""SageMaker's runtime in front of our real serving container: a moto server (with mldeploy's
SageMaker extension) forwards InvokeEndpoint to ``mldeploy serve`` on 127.0.0.1, so a plain
``boto3.client("sagemaker-runtime").invoke_endpoint(...)`` returns the model's own predictions,
and the container's errors come back through SageMaker's ModelError as mldeploy errors."""

import json
import os
import pickle
import signal
import subprocess
import sys
import urllib.request

import boto3
import pytest

from mldeploy.errors import InvocationError
from mldeploy.registry import get_target
from mldeploy.testing.aws import apply_env, emulator_env, free_port, moto_server, wait_http_ok
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.moto_sagemaker import SageMakerEmulator, container_responder

pytestmark = pytest.mark.integration

MODEL = example_model_dir()
BODY = (MODEL / "serving_input_example.json").read_bytes()
BASE = {"execution_role_arn": "arn:aws:iam::123456789012:role/x", "bucket": "serving-it",
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy:1",
        "poll_interval_seconds": 0.05}


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mldeploy.cli", "serve", "-m", str(MODEL), "--host",
             "127.0.0.1", "--port", str(port), "-w", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http_ok(f"{url}/ping", proc, timeout=90):
            pytest.skip(f"the serving container did not start: {log.read_text()[-300:]}")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def server():
    with moto_server() as url:
        yield url


@pytest.fixture
def endpoint(container, server, monkeypatch):
    apply_env(monkeypatch, emulator_env(server))
    urllib.request.urlopen(urllib.request.Request(f"{server}/moto-api/reset", method="POST"))
    with SageMakerEmulator(responder=container_responder(container)):
        boto3.client("s3").create_bucket(Bucket=BASE["bucket"])
        target = get_target("sagemaker:/us-east-1", BASE)
        target.create("served", str(MODEL))
        yield target


def expected_predictions():
    import pandas as pd

    with open(MODEL / "model.pkl", "rb") as fh:
        clf = pickle.load(fh)
    split = json.loads(BODY)["dataframe_split"]
    return clf.predict(pd.DataFrame(split["data"], columns=split["columns"])).tolist()


def test_plain_boto3_gets_the_models_predictions(endpoint):
    resp = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="served", ContentType="application/json", Body=BODY)
    assert json.loads(resp["Body"].read()) == {"predictions": expected_predictions()}
    assert endpoint.invoke("served", BODY).predictions == expected_predictions()


def test_container_errors_come_back_as_mldeploy_errors(endpoint):
    with pytest.raises(InvocationError) as info:
        endpoint.invoke("served", b'{"nope": 1}')
    err = info.value
    assert err.status == 400 and "unknown top-level key" in err.message
    assert "Traceback" not in str(err)
