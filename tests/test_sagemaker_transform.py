"""SageMaker Batch Transform through the core's transaction, against moto with the emulator's
transform jobs (records read from the emulated S3, answers written back as KEY.out). The
responder here answers one label a record (a stand-in model: the control plane is under test;
the real container's answers are in integration/test_sagemaker_transform_live.py)."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from mldeploy.errors import ConfigError, DeploymentFailedError, UsageError
from mldeploy.registry import get_target
from mldeploy.testing._moto_parts import ContainerError
from mldeploy.testing.conformance import example_model_dir

moto = pytest.importorskip("moto")

MODEL = str(example_model_dir())
ROLE = "arn:aws:iam::123456789012:role/x"
CONFIG = {"execution_role_arn": ROLE, "bucket": "mldeploy-art", "image_uri":
          "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy:1",
          "poll_interval_seconds": 0.05}


def _label(body: bytes, ctype: str) -> bytes:
    lines = [line for line in body.splitlines() if line.strip()]
    out = []
    for line in lines:
        if b"bad" in line:
            raise ContainerError(400, json.dumps({"error_code": "BAD_REQUEST",
                                                  "message": "row 0: 'bad' is not a number"}))
        out.append(b"1" if float(line.split(b",")[0]) > 0 else b"0")
    return b"\n".join(out) + b"\n"


@pytest.fixture()
def aws(monkeypatch):
    from moto import mock_aws

    from mldeploy.testing.moto_sagemaker import SageMakerEmulator

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    calls: list[bytes] = []

    def responder(endpoint, variant, model, body, ctype="application/json"):
        calls.append(body)
        return _label(body, ctype), "text/csv"

    with mock_aws(), SageMakerEmulator(responder=responder) as em:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="data")
        em.calls = calls
        yield em, s3, boto3.client("sagemaker")


def _buckets(s3) -> set[str]:
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


def _target(events=None):
    return get_target("sagemaker", CONFIG, progress=(events.append if events is not None
                                                     else None))


def test_job_scores_every_object_and_removes_what_it_created(aws):
    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1.5,2\n-1,3\n\n2,2\n")
    s3.put_object(Bucket="data", Key="in/sub/b.csv", Body=b"-3,1\n")
    events = []
    result = _target(events).transform("scores", MODEL, {
        "input": "s3://data/in/", "output": "s3://data/out", "max_payload_mb": 1})
    assert result.status.value == "ready"
    assert set(result.outputs) == {"s3://data/out/a.csv.out", "s3://data/out/sub/b.csv.out"}
    body = s3.get_object(Bucket="data", Key="out/a.csv.out")["Body"].read()
    assert body.splitlines() == [b"1", b"0", b"1"]  # blank line dropped, one answer a record
    assert s3.get_object(Bucket="data", Key="out/sub/b.csv.out")["Body"].read() == b"0\n"
    job = sm.describe_transform_job(TransformJobName=result.details["job_name"])
    assert job["TransformJobStatus"] == "Completed"
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformOutput"]["Accept"] == "text/csv"
    assert job["MaxPayloadInMB"] == 1
    assert len(em.calls) == 2  # one mini-batch an object (MultiRecord)
    # the model and the artifact were for this job only
    assert sm.list_models()["Models"] == []
    assert "mldeploy-art" not in _buckets(s3)  # the bucket it made for the artifact, too
    assert {r.kind for r in result.removed} == {"model", "s3-object", "s3-bucket"}
    assert any("Completed" in str(e) for e in events)


def test_single_record_sends_one_request_a_record(aws):
    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,1\n-1,1\n1,1\n")
    _target().transform("one", MODEL, {"input": "s3://data/in/", "output": "s3://data/o/",
                                       "batch_strategy": "SingleRecord"})
    assert len(em.calls) == 3
    assert s3.get_object(Bucket="data", Key="o/a.csv.out")["Body"].read() == b"1\n0\n1\n"


def test_failed_records_are_reported_and_everything_is_removed(aws):
    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,1\nbad,2\n")
    with pytest.raises(DeploymentFailedError) as err:
        _target().transform("bad", MODEL, {"input": "s3://data/in/", "output": "s3://data/o/"})
    message = err.value.message
    assert message.startswith("transform of bad failed: ClientError: See job logs")
    assert "failed records:" in message and "'bad' is not a number" in message
    assert "a.csv" in message
    assert sm.list_models()["Models"] == []
    assert "mldeploy-art" not in _buckets(s3)
    jobs = sm.list_transform_jobs()["TransformJobSummaries"]
    assert [j["TransformJobStatus"] for j in jobs] == ["Failed"]


def test_timeout_stops_the_job_and_cleans_up(aws):
    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,1\n" * 50)

    def slow(endpoint, variant, model, body, ctype="application/json"):
        time.sleep(0.3)
        return _label(body, ctype), "text/csv"

    em.responder = slow
    with pytest.raises(Exception) as err:
        _target().transform("slow", MODEL, {"input": "s3://data/in/", "output": "s3://data/o/",
                                            "batch_strategy": "SingleRecord"}, timeout=0.5)
    assert "timed out" in err.value.message and "stopped" in err.value.hint
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = sm.list_transform_jobs()["TransformJobSummaries"][0]["TransformJobStatus"]
        if status == "Stopped":
            break
        time.sleep(0.1)
    assert status == "Stopped"
    assert sm.list_models()["Models"] == []


def test_bad_job_settings_are_one_line_errors(aws):
    with pytest.raises(ConfigError, match="not an s3:// URI"):
        _target().transform("x", MODEL, {"input": "/tmp/in", "output": "s3://data/o/"})
    with pytest.raises(ConfigError, match="unknown config key 'accpet'"):
        _target().transform("x", MODEL, {"input": "s3://data/in/", "output": "s3://data/o/",
                                         "accpet": "text/csv"})
    with pytest.raises(ConfigError, match="content_type"):
        _target().transform("x", MODEL, {"input": "s3://data/in/", "output": "s3://data/o/",
                                         "content_type": "text/plain"})
    with pytest.raises(DeploymentFailedError, match="No S3 objects found"):
        _target().transform("x", MODEL, {"input": "s3://data/nothing/",
                                         "output": "s3://data/o/"})


def test_a_target_without_batch_jobs_says_so():
    with pytest.raises(UsageError, match="has no batch jobs"):
        get_target("local").transform("x", MODEL, {})


def test_cli_batch_prints_the_result(aws, capsys):
    from mldeploy.cli import main

    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="in/a.jsonl", Body=b"1,0\n")
    args = ["batch", "-t", "sagemaker", "-n", "cli", "-m", MODEL, "-i", "s3://data/in/",
            "--output-path", "s3://data/o/"]
    for k, v in CONFIG.items():
        args += ["-C", f"{k}={v}"]
    main(args)
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ready" and out["outputs"] == ["s3://data/o/a.jsonl.out"]
    with pytest.raises(SystemExit) as code:
        bad = list(args)
        bad[bad.index("-i") + 1] = "data/in"
        main(bad)
    assert code.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3:// URI" in err[0]


def test_two_jobs_of_the_same_model_at_once_do_not_break_each_other(aws):
    """Job A's records wait until job B (the same name, the same model) has finished and
    cleaned up; A's model and artifact must still be there, as its instances need them."""
    import threading

    em, s3, sm = aws
    s3.put_object(Bucket="data", Key="a/x.csv", Body=b"1,1\n-1,1\n")
    s3.put_object(Bucket="data", Key="b/x.csv", Body=b"-2,1\n")
    b_done = threading.Event()
    seen: dict[bytes, str] = {}

    def responder(endpoint, variant, model, body, ctype="application/json"):
        if body.startswith(b"1,1"):  # job A's mini-batch
            assert b_done.wait(10)
        # what an instance needs to start: the model and its artifact
        desc = sm.describe_model(ModelName=model)
        bucket, _, key = desc["PrimaryContainer"]["ModelDataUrl"][5:].partition("/")
        s3.head_object(Bucket=bucket, Key=key)
        seen[body] = model
        return _label(body, ctype), "text/csv"

    em.responder = responder
    results: dict[str, object] = {}

    def job_a():
        try:
            results["a"] = _target().transform("nightly", MODEL, {
                "input": "s3://data/a/", "output": "s3://data/out-a/"})
        except Exception as exc:  # reported by the assertion below
            results["a"] = exc

    thread = threading.Thread(target=job_a)
    thread.start()
    deadline = time.monotonic() + 10
    while not sm.list_transform_jobs()["TransformJobSummaries"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        b = _target().transform("nightly", MODEL, {"input": "s3://data/b/",
                                                   "output": "s3://data/out-b/"})
    finally:
        b_done.set()
        thread.join(20)
    a = results["a"]
    assert not isinstance(a, Exception), a
    assert a.status.value == "ready" and b.status.value == "ready"
    assert s3.get_object(Bucket="data", Key="out-a/x.csv.out")["Body"].read() == b"1\n0\n"
    assert s3.get_object(Bucket="data", Key="out-b/x.csv.out")["Body"].read() == b"0\n"
    assert len(set(seen.values())) == 2  # a model a job
    assert sm.list_models()["Models"] == []  # and each removed its own
    assert "mldeploy-art" not in _buckets(s3)
