"""SageMaker Batch Transform end to end: mldeploy's ``transform`` verb against moto (a server on
127.0.0.1) with the container emulator, which runs the model's real serving image on the local
Docker engine for the job's records (headerless CSV and JSON Lines from the emulated S3, with the
job's Accept) and writes the answers back as KEY.out. What the emulator does not do: instances
(one container serves the job whatever InstanceCount says), manifests, compression."""

from __future__ import annotations

import json
from typing import Any

import boto3
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.registry import get_target
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.sagemaker_containers import LABEL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = str(example_model_dir())
IMAGE = "mldeploy-batch-transform-it:1"
FEATURES = [f"f{i}" for i in range(20)]


@pytest.fixture(scope="module")
def image(docker_engine: Any, base_image: str) -> str:
    from mldeploy.container.image import build_docker

    build_docker(MODEL, IMAGE, base_image=base_image)
    return IMAGE


@pytest.fixture(scope="module")
def emulated(docker_engine: Any, image: str):
    from mldeploy.testing.aws import emulator_env, moto_server
    from mldeploy.testing.sagemaker_containers import ContainerSageMakerEmulator

    mp = pytest.MonkeyPatch()
    with moto_server() as url, ContainerSageMakerEmulator(docker_engine,
                                                          startup_seconds=120) as em:
        for k, v in emulator_env(url).items():
            mp.setenv(k, v)
        s3 = boto3.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket="records")
        yield em, s3, boto3.client("sagemaker", endpoint_url=url)
    mp.undo()


def _target() -> Any:
    return get_target("sagemaker", {
        "execution_role_arn": "arn:aws:iam::123456789012:role/x", "bucket": "mldeploy-tr",
        "image_uri": IMAGE, "poll_interval_seconds": 0.2})


def _mine(docker_engine: Any) -> list[Any]:
    """The emulator's containers of this module's jobs (the engine is shared)."""
    return [c for c in docker_engine.containers.list(all=True, filters={"label": LABEL})
            if c.labels.get(LABEL, "").startswith("tr-")]


def _model_names(sm: Any) -> set[str]:
    """The emulator's models now (moto is shared with other modules' endpoints)."""
    return {m["ModelName"] for m in sm.list_models()["Models"]}


def _rows(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 20)), columns=FEATURES)


def test_csv_and_jsonlines_jobs_answer_as_the_model(emulated, docker_engine):
    em, s3, sm = emulated
    models_before = _model_names(sm)
    model = mlflow.pyfunc.load_model(MODEL, suppress_warnings=True)
    a, b = _rows(700, 1), _rows(300, 2)
    s3.put_object(Bucket="records", Key="csv/a.csv", Body=a.to_csv(header=False, index=False))
    s3.put_object(Bucket="records", Key="csv/b.csv", Body=b.to_csv(header=False, index=False))
    result = _target().transform("tr-csv", MODEL, {
        "input": "s3://records/csv/", "output": "s3://records/out-csv/",
        "content_type": "text/csv", "max_payload_mb": 1})
    assert result.status.value == "ready"
    for key, frame in (("a.csv", a), ("b.csv", b)):
        body = s3.get_object(Bucket="records", Key=f"out-csv/{key}.out")["Body"].read()
        got = [int(line) for line in body.decode().split()]
        assert got == list(model.predict(frame)), key  # one integer label a record, in order
    assert _model_names(sm) == models_before  # the job's model is removed after it
    assert _mine(docker_engine) == []  # and its container

    records = b"".join(json.dumps(r).encode() + b"\n" for r in a.iloc[:50].to_dict("records"))
    s3.put_object(Bucket="records", Key="jsonl/part-0.jsonl", Body=records)
    result = _target().transform("tr-jsonl", MODEL, {
        "input": "s3://records/jsonl/", "output": "s3://records/out-jsonl/",
        "content_type": "application/jsonlines"})
    body = s3.get_object(Bucket="records", Key="out-jsonl/part-0.jsonl.out")["Body"].read()
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    flat = [v for line in lines for v in (line if isinstance(line, list) else [line])]
    flat = [v["prediction"] if isinstance(v, dict) else v for v in flat]
    assert flat == list(model.predict(a.iloc[:50]))


def test_a_bad_record_fails_the_job_with_the_containers_answer(emulated, docker_engine):
    em, s3, sm = emulated
    models_before = _model_names(sm)
    text = _rows(20, 3).to_csv(header=False, index=False).splitlines()
    cells = text[7].split(",")
    cells[3] = "abc"
    text[7] = ",".join(cells)
    s3.put_object(Bucket="records", Key="bad/x.csv", Body="\n".join(text) + "\n")
    with pytest.raises(DeploymentFailedError) as err:
        _target().transform("tr-bad", MODEL, {"input": "s3://records/bad/",
                                              "output": "s3://records/out-bad/"})
    message = err.value.message
    assert "ClientError" in message and "failed records:" in message
    assert "x.csv" in message and "400" in message
    assert _model_names(sm) == models_before
    assert _mine(docker_engine) == []
