"""What a SageMaker dry run shows and what is refused before any AWS call (issue #15, item 4),
each test reproducing what the user saw:

- the plan omitted instance type and count (silently ``ml.m5.large`` x 1), and every other
  billed setting (serverless memory and concurrency, async, autoscaling);
- ``instance_type=m5.large`` passed the plan and failed at the API;
- ``-t sagemaker:/us-east-99`` was a raw HTML 500 (the emulator's answer to an unknown region).

Against moto (``mock_aws``) extended by mldeploy.testing's emulator, as ``test_sagemaker``.
"""

from __future__ import annotations

import http.server
import os
import threading

import boto3
import pytest
from moto import mock_aws

from mldeploy.errors import ConfigError
from mldeploy.plugins.sagemaker import SageMakerTarget
from mldeploy.plugins.sagemaker.config import check_instance_type, check_region
from mldeploy.target import Action, DeployMode
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.moto_sagemaker import SageMakerEmulator, reset_backends

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy-serve:1"
BUCKET = "mldeploy-test"
BASE = {"execution_role_arn": ROLE, "image_uri": IMAGE, "bucket": BUCKET,
        "poll_interval_seconds": 0.01, "timeout_seconds": 5}
MODEL = str(example_model_dir())


@pytest.fixture(scope="module")
def session():
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE")):
                mp.delenv(var)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        with mock_aws():
            yield boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name="us-east-1")


@pytest.fixture
def make(session):
    reset_backends()
    with SageMakerEmulator():
        session.client("s3").create_bucket(Bucket=BUCKET)
        yield lambda **cfg: SageMakerTarget({**BASE, **cfg}, clients=session)


def _detail(plan, kind):
    """The change of the ``kind`` this run makes or keeps (not the old one a replace deletes)."""
    (change,) = [c for c in plan.changes
                 if c.resource.kind == kind and c.action is not Action.DELETE]
    return change


# -- the plan shows what is billed -------------------------------------------------------------


def test_the_default_instance_type_and_count_are_on_the_plan(make):
    plan = make().plan(DeployMode.CREATE, "ep", MODEL)
    assert _detail(plan, "endpoint-config").detail == "variant primary: 1 x ml.m5.large, weight 1"
    assert "1 x ml.m5.large" in str(plan)
    plan = make(instance_type="ml.c5.xlarge", instance_count="3").plan(
        DeployMode.CREATE, "ep", MODEL)
    assert "variant primary: 3 x ml.c5.xlarge" in _detail(plan, "endpoint-config").detail


def test_serverless_and_async_settings_are_on_the_plan(make):
    plan = make(serverless_config={"memory_size_in_mb": "4096", "max_concurrency": "20",
                                   "provisioned_concurrency": "2"}).plan(
        DeployMode.CREATE, "ep", MODEL)
    assert _detail(plan, "endpoint-config").detail == (
        "variant primary: serverless 4096 MB, max concurrency 20, provisioned concurrency 2")
    plan = make(instance_count="2", async_inference_config={
        "output_path": "s3://mldeploy-test/out", "max_concurrent_invocations_per_instance": "4"},
        data_capture_config={"destination_s3_uri": "s3://mldeploy-test/capture",
                             "sampling_percentage": "20"}).plan(DeployMode.CREATE, "ep", MODEL)
    detail = _detail(plan, "endpoint-config").detail
    assert "2 x ml.m5.large" in detail
    assert "async: results to s3://mldeploy-test/out, 4 concurrent per instance" in detail
    assert "data capture: 20% to s3://mldeploy-test/capture" in detail


def test_autoscaling_is_on_the_plan_and_a_replace_shows_what_changes(make, tmp_path):
    import shutil

    scaled = {"min_capacity": "1", "max_capacity": "4", "target_invocations_per_instance": "250"}
    target = make(autoscaling=scaled)
    plan = target.plan(DeployMode.CREATE, "ep", MODEL)
    change = _detail(plan, "scalable-target")
    assert change.action is Action.CREATE
    assert change.detail == "1-4 instances, target 250 invocations per instance"
    target.create("ep", MODEL)
    other = tmp_path / "m2"
    shutil.copytree(MODEL, other)
    (other / "x.txt").write_text("2")
    # Replace keeps the instance type and count, and the autoscaling it has: all shown.
    plan = make().plan(DeployMode.REPLACE, "ep", str(other))
    assert "variant primary: 1 x ml.m5.large" in _detail(plan, "endpoint-config").detail
    kept = _detail(plan, "scalable-target")
    assert kept.action is Action.KEEP and kept.detail == "1-4 instances"
    plan = make(instance_count="2", autoscaling={**scaled, "max_capacity": "6"}).plan(
        DeployMode.REPLACE, "ep", str(other))
    assert "1 x ml.m5.large -> 2 x ml.m5.large" in _detail(plan, "endpoint-config").detail
    assert _detail(plan, "scalable-target").detail.startswith("1-4 instances -> 1-6 instances")


# -- refused before any AWS call -------------------------------------------------------------


class _Html500(http.server.BaseHTTPRequestHandler):
    """An endpoint answering every request with an HTML 500, as the emulator did for an unknown
    region; ``hits`` counts the requests."""

    hits = 0

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        type(self).hits += 1
        body = b"<!doctype html><title>500 Internal Server Error</title><h1>boom</h1>"
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def html_endpoint(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Html500.hits = 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield _Html500
    server.shutdown()


@pytest.mark.parametrize("args", [
    ["-t", "sagemaker:/us-east-99"],
    ["-t", "sagemaker", "-C", "region_name=us-east-99"],
    ["-t", "sagemaker:/us-east-1", "-C", "instance_type=m5.large"],
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_region_or_instance_type_is_one_line_before_any_call(html_endpoint, capsys, args,
                                                                 dry_run):
    from mldeploy.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["deploy", *args, "-n", "ep", "-m", MODEL, "-C", f"image_uri={IMAGE}",
              "-C", f"execution_role_arn={ROLE}", *(["--dry-run"] if dry_run else [])])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "<" not in err and "500" not in err and "Traceback" not in err
    if "m5.large" in " ".join(args):
        assert "did you mean 'ml.m5.large'?" in err
    else:
        assert "'us-east-99' is not an AWS region with SageMaker" in err
    assert html_endpoint.hits == 0  # refused before any AWS call


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "ap-southeast-2", "us-gov-west-1",
                                    "cn-north-1"])
def test_real_regions_pass(region):
    check_region(region)


@pytest.mark.parametrize(("region", "near"), [("us-east-99", None), ("us-east1", "us-east-1"),
                                              ("US-EAST-1", None), ("useast1", None)])
def test_unknown_regions_are_refused(region, near):
    with pytest.raises(ConfigError, match="not an AWS region with SageMaker") as info:
        check_region(region)
    if near:
        assert f"did you mean {near!r}" in info.value.message


@pytest.mark.parametrize("value", ["ml.m5.large", "ml.g5.xlarge", "ml.c5.2xlarge", "ml.t2.medium"])
def test_hosting_instance_types_pass(value):
    check_instance_type(value)


@pytest.mark.parametrize(("value", "guess"), [("m5.large", "ml.m5.large"),
                                              ("ml.m5.lrage", "ml.m5.large"),
                                              ("t3.micro", None), ("huge", None)])
def test_other_instance_types_are_refused(value, guess):
    with pytest.raises(ConfigError, match="not a SageMaker hosting instance type") as info:
        check_instance_type(value)
    if guess:
        assert f"did you mean {guess!r}" in info.value.message
