"""``mldeploy emulate sagemaker`` as a user runs it: a process on 127.0.0.1 printing the variables
to export; mldeploy's CLI deploys to it; boto3's plain ``invoke_endpoint`` gets the real model's
answers from the endpoint's container on the real Docker engine; replace serves the new model; a
replace with a broken model fails and leaves the old one serving; delete stops the containers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from mldeploy.testing.aws import free_port
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.sagemaker_containers import owned_by

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = example_model_dir()
BODY = (MODEL / "serving_input_example.json").read_bytes()
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "mldeploy-emulator-it:1"
MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


@pytest.fixture(scope="module")
def image(docker_engine: Any, base_image: str) -> str:
    from mldeploy.container.image import build_docker

    build_docker(str(MODEL), IMAGE, base_image=base_image)
    return IMAGE


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example model; the same answering 7 for every row; one that cannot load."""
    import cloudpickle
    import numpy as np
    from sklearn.dummy import DummyClassifier

    root = tmp_path_factory.mktemp("models")
    constant = root / "constant"
    shutil.copytree(MODEL, constant)
    clf = DummyClassifier(strategy="constant", constant=7).fit(np.zeros((2, 20)), [7, 0])
    (constant / "model.pkl").write_bytes(cloudpickle.dumps(clf))
    broken = root / "broken"
    shutil.copytree(MODEL, broken)
    (broken / "model.pkl").write_bytes(b"not a pickle")
    return {"example": str(MODEL), "constant": str(constant), "broken": str(broken)}


@pytest.fixture(scope="module")
def emulator(docker_engine: Any, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    out = open(log, "w+b")  # noqa: SIM115 - read back while the process runs
    proc = subprocess.Popen([MLDEPLOY, "emulate", "sagemaker", "--port", str(port),
                             "--creating-seconds", "0.5", "--updating-seconds", "0.5",
                             "--startup-seconds", "120"],
                            stdout=subprocess.PIPE, stderr=out, start_new_session=True)
    env: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while len(env) < 4 and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value
        assert env.get("AWS_ENDPOINT_URL") == f"http://127.0.0.1:{port}", log.read_text()
        yield env, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()
        left = docker_engine.containers.list(all=True, filters=owned_by(proc.pid))
        for c in left:
            c.remove(force=True)
        assert not left, "the emulator left containers behind"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))}
    return subprocess.run([MLDEPLOY, *args], capture_output=True, text=True, timeout=600,
                          env={**full, **env, "AWS_CONFIG_FILE": os.devnull,
                               "AWS_SHARED_CREDENTIALS_FILE": os.devnull}, check=False)


def invoke(env: dict[str, str]) -> list[Any]:
    rt = boto3.client("sagemaker-runtime", endpoint_url=env["AWS_ENDPOINT_URL"],
                      region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    resp = rt.invoke_endpoint(EndpointName="churn", ContentType="application/json", Body=BODY)
    return json.loads(resp["Body"].read())["predictions"]


def test_deploy_invoke_replace_fail_delete(emulator, image, models, docker_engine):
    env, pid = emulator
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="emulated")
    conf = ["-C", f"execution_role_arn={ROLE}", "-C", f"image_uri={image}",
            "-C", "bucket=emulated", "-C", "instance_count=2"]
    target = ["-t", "sagemaker:/us-east-1", "-n", "churn"]

    r = run(env, "deploy", *target, "-m", models["example"], *conf)
    assert r.returncode == 0, r.stderr
    assert invoke(env) == [1, 1, 0]
    running = docker_engine.containers.list(filters=owned_by(pid))
    assert len(running) == 2  # one container per instance

    r = run(env, "deploy", *target, "-m", models["constant"], "--mode", "replace", *conf)
    assert r.returncode == 0, r.stderr
    assert invoke(env) == [7, 7, 7]
    assert len(docker_engine.containers.list(filters=owned_by(pid))) == 2  # old ones stopped

    r = run(env, "deploy", *target, "-m", models["broken"], "--mode", "replace", *conf)
    assert r.returncode == 1 and "ping health check" in r.stderr, r.stderr
    assert invoke(env) == [7, 7, 7]  # the old model keeps serving

    r = run(env, "delete", *target[:2], "-n", "churn")
    assert r.returncode == 0, r.stderr
    assert docker_engine.containers.list(all=True, filters=owned_by(pid)) == []
