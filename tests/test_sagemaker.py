"""The SageMaker target against moto (mock_aws) extended by mldeploy.testing's emulator."""

import os
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from mldeploy.plugins.sagemaker import SageMakerTarget
from mldeploy.testing.conformance import TargetConformance
from mldeploy.testing.moto_sagemaker import (
    SageMakerEmulator,
    reset_backends,
    sagemaker_inventory,
)

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mldeploy-serve:1"
BUCKET = "mldeploy-test"
BASE = {"execution_role_arn": ROLE, "image_uri": IMAGE, "bucket": BUCKET,
        "poll_interval_seconds": 0.01, "timeout_seconds": 5}


@pytest.fixture(scope="module")
def mocked():
    """mock_aws once per module (starting it resets every moto backend: slow); each test resets
    only the services it uses. AWS_ENDPOINT_URL*/AWS_PROFILE must not redirect the clients."""
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE")):
                mp.delenv(var)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        with mock_aws():
            yield


@pytest.fixture(scope="module")
def shared_session(mocked):
    """One boto3 session for the module: its loader keeps the parsed service models (creating
    clients is otherwise most of these tests' time)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1")


@pytest.fixture
def emulator(shared_session):
    reset_backends()
    with SageMakerEmulator() as em:
        shared_session.client("s3").create_bucket(Bucket=BUCKET)
        yield em


@pytest.fixture
def session(emulator, shared_session):
    return shared_session


class TestSageMakerConformance(TargetConformance):
    @pytest.fixture
    def target(self, session):
        return SageMakerTarget(BASE, clients=session)

    @pytest.fixture
    def inventory(self, session):
        return lambda: sagemaker_inventory(session)

    @pytest.fixture
    def fail_next_deploy(self, emulator):
        def fail(reason):
            emulator.fail_next_create(reason)
            emulator.fail_next_update(reason)
        return fail


# -- SageMaker specifics ------------------------------------------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402

from mldeploy.errors import (  # noqa: E402
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentTimeoutError,
    InvocationError,
    PredictionError,
    UsageError,
)
from mldeploy.target import Action, DeployMode, Plan, Resource, Status  # noqa: E402
from mldeploy.testing.conformance import example_model_dir  # noqa: E402

MODEL = str(example_model_dir())
BODY = (example_model_dir() / "serving_input_example.json").read_bytes()
ROWS = len(json.loads(BODY)["dataframe_split"]["data"])


@pytest.fixture
def model2(tmp_path):
    dst = tmp_path / "model2"
    shutil.copytree(MODEL, dst)
    (dst / "note.txt").write_text("v2")
    return str(dst)


@pytest.fixture
def events():
    return []


@pytest.fixture
def make(session, events):
    def make(**cfg):
        return SageMakerTarget({**BASE, **cfg}, clients=session, progress=events.append)
    return make


def served_by(target, name="ep"):
    return set(target.invoke(name, BODY).predictions)


def test_create_builds_tagged_content_hashed_resources(make, session):
    t = make(tags={"team": "ml"})
    dep = t.create("ep", MODEL)
    sm = session.client("sagemaker")
    ep = sm.describe_endpoint(EndpointName="ep")
    cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    (variant,) = cfg["ProductionVariants"]
    assert variant["VariantName"] == "primary" and variant["InstanceType"] == "ml.m5.large"
    model = sm.describe_model(ModelName=variant["ModelName"])
    url = model["PrimaryContainer"]["ModelDataUrl"]
    assert url.startswith(f"s3://{BUCKET}/mldeploy/ep/") and url.endswith("/model.tar.gz")
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    tags = {x["Key"]: x["Value"] for x in sm.list_tags(ResourceArn=ep["EndpointArn"])["Tags"]}
    assert tags == {"team": "ml", "mldeploy:endpoint": "ep"}
    kinds = sorted(r.kind for r in dep.resources)
    assert kinds == ["endpoint", "endpoint-config", "model", "s3-object"]
    assert dep.url.endswith("/endpoints/ep/invocations") and dep.details["region"] == "us-east-1"
    # the artifact is the model directory, reproducibly packed
    import io
    import tarfile
    obj = session.client("s3").get_object(Bucket=BUCKET, Key=url.split("/", 3)[3])["Body"].read()
    names = tarfile.open(fileobj=io.BytesIO(obj)).getnames()
    assert "MLmodel" in names and "model.pkl" in names
    assert served_by(t) == {variant["ModelName"]}


def test_names_are_deterministic_and_within_63_chars(make, session):
    name = "e" * 63
    t = make()
    dep = t.create(name, MODEL)
    sm = session.client("sagemaker")
    cfg_name = dep.details["endpoint_config"]
    assert len(cfg_name) <= 63 and cfg_name.startswith("e" * 40)
    model_name = sm.describe_endpoint_config(
        EndpointConfigName=cfg_name)["ProductionVariants"][0]["ModelName"]
    t.delete(name)
    assert make().create(name, MODEL).details["endpoint_config"] == cfg_name
    assert model_name in served_by(t, name)


@pytest.mark.parametrize("name", ["-bad", "has_underscore", "x" * 64, "a--"])
def test_invalid_endpoint_name_is_refused_before_any_call(name):
    t = SageMakerTarget(BASE, clients=object())  # any AWS call would fail on this
    with pytest.raises(UsageError, match="not a valid SageMaker endpoint name"):
        t.create(name, MODEL)


@pytest.mark.parametrize("cfg,match", [
    ({"serverless_config": {"memory_size_in_mb": 2048}, "vpc_config":
      {"subnets": ["s"], "security_group_ids": ["g"]}}, "serverless endpoint cannot have"),
    ({"serverless_config": {}, "data_capture_config": {"destination_s3_uri": "s3://bkt/c"}},
     "serverless endpoint cannot have"),
    ({"serverless_config": {"memory_size_in_mb": 1000}}, "multiple of 1024|out of range"),
    ({"serverless_config": {"max_concurrency": 201}}, "out of range"),
    ({"serverless_config": {}, "async_inference_config": {"output_path": "s3://bkt/o"}},
     "both serverless and asynchronous"),
    ({"instance_cont": 2}, "did you mean 'instance_count'"),
    ({"execution_role_arn": "admin"}, "not an IAM role ARN"),
    ({"bucket": "s3://x"}, "bare bucket name"),
    ({"autoscaling": {"min_capacity": 3, "max_capacity": 2}}, "exceeds"),
    ({"deployment_config": {"strategy": "canery"}}, "did you mean 'canary'"),
    ({"recreate_failed": "yes please"}, "not a boolean"),
    ({"adopt": "maybe"}, "not a boolean"),
    ({"ecr_repository": "team/churn"}, "image_uri is deployed as is"),
    ({"build": {"engine": "mlserver"}}, "image_uri is deployed as is"),
    ({"image_uri": None, "ecr_repository": "team/churn:3"}, "has a tag or digest"),
    ({"image_uri": None, "ecr_repository": "ghcr.io/acme/churn"}, "not in Amazon ECR"),
    ({"image_uri": None, "ecr_repository": "Team/Churn"}, "not a valid ECR repository"),
    ({"image_uri": None, "build": {"engine": "mlservr"}}, "did you mean 'mlserver'"),
    ({"image_uri": None, "build": {"platform": "linux/s390x"}}, "linux/arm64"),
])
def test_config_is_checked_before_any_aws_call(cfg, match):
    with pytest.raises(ConfigError, match=match):
        SageMakerTarget({**BASE, **cfg}, clients=object())


def test_booleans_parse_like_the_cli_says():
    assert SageMakerTarget({"recreate_failed": "True"}).config.recreate_failed is True
    assert SageMakerTarget({"recreate_failed": "0"}).config.recreate_failed is False


def test_missing_role_is_a_config_error_and_creates_nothing(make, session):
    before = sagemaker_inventory(session)
    with pytest.raises(ConfigError, match="execution_role_arn"):
        make(execution_role_arn=None).create("ep", MODEL)
    assert sagemaker_inventory(session) == before


def test_create_waits_through_creating_and_reports_progress(make, emulator, events):
    emulator.creating_seconds = 0.15
    dep = make().create("ep", MODEL)
    assert dep.status is Status.READY
    statuses = [e.status for e in events if e.status]
    assert statuses[:2] == [Status.CREATING, Status.READY]
    assert any("ep: Creating" in str(e) for e in events) and events[-1].elapsed >= 0.15


def test_no_wait_returns_while_creating(make, emulator):
    emulator.creating_seconds = 30
    dep = make().create("ep", MODEL, wait=False)
    assert dep.status is Status.CREATING
    emulator.release()
    assert make().get("ep").status is Status.READY


def test_create_existing_is_refused(make):
    make().create("ep", MODEL)
    with pytest.raises(DeploymentExistsError, match="--mode replace"):
        make().create("ep", MODEL)


def test_failed_create_removes_everything_including_a_bucket_it_made(make, emulator, session):
    before = sagemaker_inventory(session)
    emulator.fail_next_create("ping health check failed",
                              logs=["ModuleNotFoundError: No module named 'sklearn'",
                                    '  File "/opt/app.py", line 3, in <module>'])
    with pytest.raises(DeploymentFailedError) as info:
        make(bucket="fresh-bucket").create("ep", MODEL)
    err = info.value
    assert "ping health check failed" in err.message
    assert "No module named 'sklearn'" in err.message and "File \"" not in err.message
    assert Resource("s3-bucket", "s3://fresh-bucket") in err.cleaned and err.leftover == []
    assert sagemaker_inventory(session) == before


def test_replace_keeps_variant_capture_async_tags_and_cleans_old(make, session, model2):
    sm = session.client("sagemaker")
    t = make(variant_name="blue", instance_type="ml.c5.xlarge", instance_count=2,
             tags={"team": "ml"},
             data_capture_config={"destination_s3_uri": f"s3://{BUCKET}/capture"},
             async_inference_config={"output_path": f"s3://{BUCKET}/async"})
    old = t.create("ep", MODEL)
    old_ids = {r.id for r in old.resources}
    new = make().replace("ep", model2)   # no settings passed again
    assert new.model_uri == model2 and new.status is Status.READY
    cfg = sm.describe_endpoint_config(EndpointConfigName=new.details["endpoint_config"])
    (v,) = cfg["ProductionVariants"]
    assert (v["VariantName"], v["InstanceType"], v["InitialInstanceCount"]) == (
        "blue", "ml.c5.xlarge", 2)
    assert cfg["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/capture"
    assert cfg["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == f"s3://{BUCKET}/async"
    tags = {x["Key"]: x["Value"] for x in sm.list_tags(ResourceArn=new.details["arn"])["Tags"]}
    assert tags["team"] == "ml"
    now = sagemaker_inventory(session)
    gone = old_ids - {new.details["arn"]}
    assert gone and not (gone & now), "the previous model, config and artifact are removed"
    assert {r.id for r in new.resources} <= now
    assert served_by(t) == {v["ModelName"]}


def test_replace_with_same_model_and_config_changes_nothing(make, session, emulator):
    make().create("ep", MODEL)
    before = sagemaker_inventory(session)
    make().replace("ep", MODEL)
    assert emulator.update_requests == [] and sagemaker_inventory(session) == before


def test_failed_replace_rolls_back_reports_and_leaves_nothing(make, emulator, session, model2,
                                                             events):
    t = make()
    t.create("ep", MODEL)
    serving = served_by(t)
    before = sagemaker_inventory(session)
    emulator.updating_seconds = 0.1
    emulator.fail_next_update("Rolled back: health check failed",
                              logs=["Traceback (most recent call last):", "ValueError: bad pickle"])
    with pytest.raises(DeploymentFailedError) as info:
        t.replace("ep", model2)
    assert "Rolled back: health check failed" in info.value.message
    assert "ValueError: bad pickle" in info.value.message
    assert "Traceback" not in str(info.value)
    assert "previous deployment is still serving" in info.value.hint
    assert {c.kind for c in info.value.cleaned} == {"endpoint-config", "model", "s3-object"}
    assert sagemaker_inventory(session) == before
    assert t.get("ep").status is Status.READY and served_by(t) == serving
    assert any("ep: Updating" in str(e) for e in events)


def test_old_model_serves_while_updating(make, emulator, model2):
    t = make()
    t.create("ep", MODEL)
    serving = served_by(t)
    emulator.hang_next_update()
    dep = t.replace("ep", model2, wait=False)
    assert dep.status is Status.UPDATING and served_by(t) == serving
    emulator.release()
    assert served_by(t) != serving


def test_timed_out_replace_keeps_old_serving_and_rerun_finishes(make, emulator, session, model2):
    t = make()
    t.create("ep", MODEL)
    serving = served_by(t)
    emulator.hang_next_update()
    with pytest.raises(DeploymentTimeoutError) as info:
        t.replace("ep", model2, timeout=0.2)
    err = info.value
    assert "still running" in err.hint and len(err.leftover) == 3
    assert served_by(t) == serving
    with pytest.raises(Exception, match="Updating"):
        t.replace("ep", model2)  # busy: says so instead of stacking a second update
    emulator.release()
    dep = make().replace("ep", model2)  # re-run: finds the update done, removes the old model
    assert dep.model_uri == model2 and served_by(t) != serving
    assert {r.id for r in dep.resources} | {f"s3://{BUCKET}"} == sagemaker_inventory(session)


def test_failed_endpoint_needs_explicit_recreate(make, emulator, session, model2):
    emulator.creating_seconds = 0
    t = make()
    t.create("ep", MODEL, wait=False)
    sm_backend_fail(emulator, session)
    with pytest.raises(DeploymentFailedError, match="is Failed") as info:
        t.replace("ep", model2)
    assert "recreate_failed=true" in info.value.hint
    dep = make(recreate_failed=True).replace("ep", model2)
    assert dep.status is Status.READY and dep.model_uri == model2
    assert {r.id for r in dep.resources} | {f"s3://{BUCKET}"} == sagemaker_inventory(session)


def sm_backend_fail(emulator, session):
    """Turn the endpoint 'ep' Failed, as SageMaker does when a container dies in service."""
    from moto.sagemaker.models import sagemaker_backends
    ep = sagemaker_backends["123456789012"]["us-east-1"].endpoints["ep"]
    ep.endpoint_status, ep.failure_reason = "Failed", "instance health check failed"


def test_add_variant_then_shift_traffic(make, session, model2):
    t = make()
    t.create("ep", MODEL)
    first = served_by(t)
    dep = make(variant_name="green", initial_weight=0.0).add("ep", model2)
    assert [v.name for v in dep.variants] == ["primary", "green"]
    assert {v.name: v.weight for v in dep.variants} == {"primary": 1.0, "green": 0.0}
    assert served_by(t) == first
    green = set(t.invoke("ep", BODY, variant="green").predictions)
    assert green != first
    dep = t.traffic("ep", {"primary": 0.0, "green": 1.0})
    assert {v.name: v.weight for v in dep.variants} == {"primary": 0.0, "green": 1.0}
    assert served_by(t) == green
    with pytest.raises(UsageError, match="no variant 'blue'"):
        t.traffic("ep", {"blue": 1})
    with pytest.raises(UsageError, match="say which one"):
        make().replace("ep", MODEL)


def test_weights_config_applies_after_add(make, model2):
    make().create("ep", MODEL)
    dep = make(variant_name="green", weights={"primary": 3, "green": 1}).add("ep", model2)
    assert {v.name: v.weight for v in dep.variants} == {"primary": 3.0, "green": 1.0}


def test_autoscaling_registered_and_retained_on_replace(make, session, emulator, model2):
    t = make(autoscaling={"min_capacity": 1, "max_capacity": 4,
                          "target_invocations_per_instance": 50})
    dep = t.create("ep", MODEL)
    assert Resource_ids(dep, "scalable-target") == ["endpoint/ep/variant/primary"]
    aas = session.client("application-autoscaling")
    (pol,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    cfg = pol["TargetTrackingScalingPolicyConfiguration"]
    assert cfg["TargetValue"] == 50 and cfg["PredefinedMetricSpecification"][
        "PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    make().replace("ep", model2)
    assert emulator.update_requests[-1]["RetainAllVariantProperties"] is True
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    make().delete("ep")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def Resource_ids(dep, kind):
    return [r.id for r in dep.resources if r.kind == kind]


def test_blue_green_deployment_config_is_sent(make, emulator, model2):
    make().create("ep", MODEL)
    make(deployment_config={"strategy": "canary", "step_percent": 20,
                            "wait_interval_seconds": 60, "rollback_alarms": ["p99-latency"]}
         ).replace("ep", model2)
    dc = emulator.update_requests[-1]["DeploymentConfig"]
    routing = dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "CANARY", "WaitIntervalInSeconds": 60,
                       "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}}
    assert dc["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "p99-latency"}]}


def test_serverless_create_and_no_switch_from_realtime(make, session, model2):
    dep = make(serverless_config={"memory_size_in_mb": "3072", "max_concurrency": 10}).create(
        "sl", MODEL)
    cfg = session.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=dep.details["endpoint_config"])
    assert cfg["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 3072,
                                                                "MaxConcurrency": 10}
    dep2 = make().replace("sl", model2)   # stays serverless without saying it again
    cfg = session.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=dep2.details["endpoint_config"])
    assert "ServerlessConfig" in cfg["ProductionVariants"][0]
    make().create("rt", MODEL)
    before = sagemaker_inventory(session)
    with pytest.raises(UsageError, match="cannot become serverless"):
        make(serverless_config={}).replace("rt", model2)
    assert sagemaker_inventory(session) == before


def test_dry_run_plans_and_changes_nothing(make, session, model2):
    t = make()
    t.create("ep", MODEL)
    before = sagemaker_inventory(session)
    plan = t.deploy(DeployMode.REPLACE, "ep", model2, dry_run=True)
    assert isinstance(plan, Plan) and sagemaker_inventory(session) == before
    kinds = {(c.action, c.resource.kind) for c in plan.changes}
    assert {(Action.CREATE, "model"), (Action.CREATE, "endpoint-config"),
            (Action.CREATE, "s3-object"), (Action.UPDATE, "endpoint"),
            (Action.DELETE, "model"), (Action.DELETE, "endpoint-config"),
            (Action.DELETE, "s3-object")} <= kinds
    text = str(plan)
    assert text.startswith("replace ep on sagemaker would:") and "\n  + model ep-m-" in text


def test_delete_is_idempotent_and_removes_orphans(make, session, emulator, model2):
    t = make()
    t.create("ep", MODEL)
    emulator.fail_next_update()
    # a crashed earlier run: leave a tagged model behind by failing cleanup by hand
    with pytest.raises(DeploymentFailedError):
        t.replace("ep", model2)
    gone = t.delete("ep")
    assert gone.existed and {r.kind for r in gone.removed} >= {"endpoint", "model",
                                                                "endpoint-config", "s3-object"}
    assert sagemaker_inventory(session) == {f"s3://{BUCKET}"}
    again = t.delete("ep")
    assert again.existed is False and again.removed == () and again.leftover == ()


def test_invoke_errors_are_translated_without_tracebacks(make, emulator):
    t = make()
    t.create("ep", MODEL)
    emulator.fail_next_invoke(500, "division by zero")
    with pytest.raises(PredictionError) as info:
        t.invoke("ep", BODY)
    assert info.value.status == 500 and "division by zero" in info.value.message
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", b'{"nope": 1}')
    assert info.value.status == 400 and not isinstance(info.value, PredictionError)
    with pytest.raises(InvocationError, match="Variant ghost"):
        t.invoke("ep", BODY, variant="ghost")


def test_invoke_encodes_dataframes(make):
    import pandas as pd
    t = make()
    t.create("ep", MODEL)
    frame = pd.DataFrame([[0.0] * 20] * 4, columns=[f"f{i}" for i in range(20)])
    pred = t.invoke("ep", frame)
    assert len(pred.predictions) == 4 and pred.variant == "primary"


def test_list_is_paginated_and_complete(make):
    t = make()
    for i in range(3):
        t.create(f"ep{i}", MODEL)
    assert [d.name for d in t.list()] == ["ep0", "ep1", "ep2"]


# -- the CLI, through the real registry and the error bridge --------------------------------------


def run_cli(capsys, *args):
    from mldeploy.cli import main
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_end_to_end(emulator, session, capsys, monkeypatch, model2):
    from mldeploy.plugins.sagemaker import _client

    regions = []

    def create(region, assume_role_arn=None):  # the shared session: parsed models are cached
        regions.append(region)
        return _client.Clients(session)
    monkeypatch.setattr(_client.Clients, "create", staticmethod(create))
    conf = ["-C", f"execution_role_arn={ROLE}", "-C", f"image_uri={IMAGE}", "-C",
            f"bucket={BUCKET}", "-C", "poll_interval_seconds=0.01"]
    t = ["--target", "sagemaker:/us-east-1", "--name", "cli-ep"]
    code, out, err = run_cli(capsys, "deploy", *t, "-m", MODEL, *conf)
    assert code == 0, err
    assert json.loads(out)["status"] == "ready" and "cli-ep: InService" in err
    code, out, err = run_cli(capsys, "get", *t)
    assert json.loads(out)["model_uri"] == MODEL
    code, out, _ = run_cli(capsys, "list", "--target", "sagemaker:/us-east-1")
    assert [d["name"] for d in json.loads(out)] == ["cli-ep"]
    code, out, _ = run_cli(capsys, "invoke", *t, "--data", BODY.decode())
    assert len(json.loads(out)) == ROWS
    emulator.fail_next_update("health check failed")
    code, out, err = run_cli(capsys, "deploy", *t, "-m", model2, "--mode", "replace", *conf)
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()[-1:]
    assert line.startswith("error: replace of cli-ep failed: health check failed")
    assert "still serving" in line and "Traceback" not in err
    code, _, err = run_cli(capsys, "deploy", *t, "-m", MODEL, "-C", "instance_cout=2")
    assert code == 2 and "did you mean 'instance_count'" in err
    code, _, err = run_cli(capsys, "deploy", *t, "-m", MODEL, *conf)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(capsys, "deploy", "--target", "sagemakr", "--name", "x", "-m", MODEL)
    assert code == 2 and "did you mean 'sagemaker'" in err
    code, out, _ = run_cli(capsys, "delete", *t)
    assert json.loads(out)["existed"] is True
    code, out, _ = run_cli(capsys, "delete", *t)
    assert json.loads(out)["existed"] is False
    code, _, err = run_cli(capsys, "get", *t)
    assert code == 2 and "no SageMaker endpoint named 'cli-ep'" in err  # not found: bad input
    assert set(regions) == {"us-east-1"}


def test_region_comes_from_spec_then_config_and_missing_region_is_clear(emulator, monkeypatch):
    from mldeploy.errors import ConfigError as CE
    from mldeploy.plugins.sagemaker._client import Clients
    from mldeploy.registry import get_target

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(CE, match="no AWS region") as info:
        get_target("sagemaker", BASE).list()
    assert "sagemaker:/REGION" in info.value.hint
    t = get_target("sagemaker:/eu-west-1", {**BASE, "region_name": "us-east-1"})
    t.list()
    assert t.clients.region == "eu-west-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    c = Clients.create("us-east-1", "arn:aws:iam::123456789012:role/deployer")
    creds = c.session.get_credentials()
    assert creds.access_key != "testing" and creds.token  # temporary credentials of the role


def test_cleanup_that_cannot_finish_names_what_is_left(make, emulator, session, model2):
    t = make()
    t.create("ep", MODEL)
    plan = t.plan(DeployMode.REPLACE, "ep", model2)
    (new_model,) = [c.resource.id for c in plan.changes
                    if c.action is Action.CREATE and c.resource.kind == "model"]
    emulator.refuse_deletes(new_model)
    emulator.fail_next_update("rolled back")
    with pytest.raises(DeploymentFailedError) as info:
        t.replace("ep", model2)
    err = info.value
    assert len(err.leftover) == 1 and err.leftover[0].kind == "model"
    assert err.leftover[0].id.startswith("arn:aws:sagemaker:")
    assert err.leftover[0].id.endswith(f"model/{new_model}") and new_model in err.hint
    assert {c.kind for c in err.cleaned} == {"endpoint-config", "s3-object"}
    assert t.get("ep").model_uri == MODEL
    # the same command again, once deleting works: the leftover is adopted, nothing is doubled
    emulator.allow_deletes()
    events = []
    dep = SageMakerTarget(BASE, clients=session, progress=events.append).replace("ep", model2)
    assert dep.model_uri == model2 and any(f"reusing model {new_model}" in str(e) for e in events)
    assert {r.id for r in dep.resources} | {f"s3://{BUCKET}"} == sagemaker_inventory(session)


def test_autoscaled_variant_keeps_its_instance_type(make, session, model2):
    make(autoscaling={"max_capacity": 3}).create("ep", MODEL)
    before = sagemaker_inventory(session)
    with pytest.raises(UsageError, match="autoscaled") as info:
        make(instance_type="ml.c5.large").replace("ep", model2)
    assert "endpoint/ep/variant/primary" in info.value.hint
    assert sagemaker_inventory(session) == before


def test_model_in_image_uploads_nothing(make, session):
    dep = make(model_in_image=True).create("ep", MODEL)
    assert [r for r in dep.resources if r.kind == "s3-object"] == []
    sm = session.client("sagemaker")
    cfg = sm.describe_endpoint_config(EndpointConfigName=dep.details["endpoint_config"])
    model = sm.describe_model(ModelName=cfg["ProductionVariants"][0]["ModelName"])
    assert "ModelDataUrl" not in model["PrimaryContainer"]
    assert session.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    plan = make(model_in_image=True).plan(DeployMode.CREATE, "ep2", MODEL)
    assert not [c for c in plan.changes if c.resource.kind.startswith("s3")]


def test_bucket_access_denied_is_clear_and_creates_nothing(make, session, monkeypatch):
    """moto's IAM enforcement on: a deployer allowed SageMaker but not S3."""
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin

    iam = session.client("iam")
    iam.create_user(UserName="deployer")
    iam.put_user_policy(UserName="deployer", PolicyName="sm-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sagemaker:*", "sts:*"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    before = sagemaker_inventory(session)
    deployer = boto3.Session(aws_access_key_id=key["AccessKeyId"],
                             aws_secret_access_key=key["SecretAccessKey"],
                             region_name="us-east-1")
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    t = SageMakerTarget(BASE, clients=deployer)
    with pytest.raises(Exception) as info:
        t.create("ep", MODEL)
    monkeypatch.undo()
    err = info.value
    assert type(err).__name__ == "TargetError"
    assert f"access to S3 bucket '{BUCKET}' is denied" in err.message
    assert "-C bucket=" in err.hint and key["SecretAccessKey"] not in str(err)
    assert sagemaker_inventory(session) == before


@pytest.mark.parametrize("key,value,nearest", [
    ("bucket_name", "b", "bucket"),           # MLflow's key, silently ignored there
    ("image_url", "i", "image_uri"),          # MLflow's key
    ("instance_typ", "ml.m5.large", "instance_type"),
])
def test_mlflow_style_keys_are_errors_naming_ours(key, value, nearest):
    with pytest.raises(ConfigError, match=f"did you mean '{nearest}'"):
        SageMakerTarget({key: value})


def test_reserved_and_too_many_tags_are_refused():
    with pytest.raises(ConfigError, match="reserved prefix"):
        SageMakerTarget({"tags": {"mldeploy:endpoint": "x"}})
    with pytest.raises(ConfigError, match="at most 48"):
        SageMakerTarget({"tags": {f"k{i}": "v" for i in range(49)}})


def test_replace_when_the_endpoint_config_was_deleted_out_of_band(make, session, emulator,
                                                                  model2):
    t = make()
    dep = t.create("ep", MODEL)
    emulator.strict = False  # someone else did it, as AWS allows
    session.client("sagemaker").delete_endpoint_config(
        EndpointConfigName=dep.details["endpoint_config"])
    assert t.get("ep").variants == ()
    new = make().replace("ep", model2)
    assert new.status is Status.READY and [v.name for v in new.variants] == ["primary"]


def test_async_endpoint_invoke_goes_through_s3(make, session, model2):
    t = make(async_inference_config={"output_path": f"s3://{BUCKET}/async-out"})
    dep = t.create("as", MODEL)
    pred = t.invoke("as", BODY)
    (model_arn,) = [r.id for r in dep.resources if r.kind == "model"]
    assert pred.predictions == [model_arn.rsplit("/", 1)[1]] * ROWS
    keys = [o["Key"] for o in session.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix="async-out/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(".out")
    assert not session.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix="mldeploy/as/async-input/").get("Contents"), "request removed"
    with pytest.raises(InvocationError, match="failed") as info:
        t.invoke("as", b'{"nope": 1}')
    assert "not a scoring request" in info.value.message


# -- no image_uri: the model's image is built, pushed to ECR and deployed -----------------------

from mldeploy.errors import BuildError  # noqa: E402
from mldeploy.plugins.sagemaker import _client as aws  # noqa: E402

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class FakeImages:
    """Builder and pusher that record what they are asked to do; the push puts the tag into
    moto's ECR (creating the repository when missing) as the real pusher does."""

    def __init__(self, session):
        self.ecr = session.client("ecr")
        self.fail = None
        self.built, self.pushed = [], []

    def build(self, image, log):
        assert (image.model_dir / "MLmodel").is_file()
        if self.fail == "build":
            raise BuildError("image build failed at step 9/22 (RUN pip install): No matching "
                             "distribution found for scikit-learn==99",
                             hint="a wheel does not fit the image's Python")
        self.built.append(image)

    def push(self, image, log):
        if self.fail == "push":  # a foreign exception, carrying a secret
            raise RuntimeError("denied: token=abc123 your authorization token has expired")
        try:
            self.ecr.create_repository(repositoryName=image.repository)
        except self.ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        manifest = {"schemaVersion": 2, "layers": [],
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"digest": "sha256:" + "a" * 64}}
        self.ecr.put_image(repositoryName=image.repository, imageTag=image.tag,
                           imageManifest=json.dumps(manifest))
        self.pushed.append(image.reference)


@pytest.fixture
def images(session):
    fake = FakeImages(session)  # moto's ECR reset would empty S3 too: remove repositories
    for repo in fake.ecr.describe_repositories()["repositories"]:
        fake.ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)
    return fake


@pytest.fixture
def build_make(session, events, images):
    def make(**cfg):
        clients = aws.Clients(session, build_image=images.build, push_image=images.push)
        return SageMakerTarget({**BASE, "image_uri": None, **cfg}, clients=clients,
                               progress=events.append)
    return make


def container_of(session, dep):
    sm = session.client("sagemaker")
    cfg = sm.describe_endpoint_config(EndpointConfigName=dep.details["endpoint_config"])
    return sm.describe_model(ModelName=cfg["ProductionVariants"][0]["ModelName"])[
        "PrimaryContainer"]


def test_without_image_uri_the_model_image_is_built_pushed_once_and_deployed(
        build_make, images, session, events, model2):
    dep = build_make().create("ep", MODEL)
    (image,) = images.built
    ref = f"{ECR}/mldeploy/ep:{image.tag}"
    assert images.pushed == [ref] and image.options.effective()["engine"] == "flask"
    container = container_of(session, dep)
    assert container["Image"] == ref and "ModelDataUrl" not in container  # the model is inside
    assert {r.kind for r in dep.resources} == {"endpoint", "endpoint-config", "model"}
    assert session.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    # the same model again (here: recreated after a delete): its digest tag is in ECR, no build
    build_make().delete("ep")
    events.clear()
    assert container_of(session, build_make().create("ep", MODEL))["Image"] == ref
    assert len(images.built) == 1 and len(images.pushed) == 1
    assert any("in ECR already: not rebuilding" in str(e) for e in events)
    # a changed model, then a changed build option: a new tag each, built and pushed once
    dep = build_make().replace("ep", model2)
    assert len(images.built) == 2 and container_of(session, dep)["Image"] == images.pushed[-1]
    assert images.pushed[-1] != ref
    assert build_make().replace("ep", model2).details == dep.details  # unchanged: nothing new
    dep = build_make(build={"engine": "mlserver"}).replace("ep", model2)
    assert len(images.built) == 3 and images.built[-1].options.engine == "mlserver"
    assert container_of(session, dep)["Image"] == images.pushed[-1]
    assert len(set(images.pushed)) == 3
    assert {r.id for r in dep.resources} | {f"s3://{BUCKET}"} == sagemaker_inventory(session)


@pytest.mark.parametrize("name,repository,expected", [
    ("My--Ep", None, f"{ECR}/mldeploy/my-ep"),
    ("ep", "team/churn", f"{ECR}/team/churn"),
    ("ep", f"{ECR}/team/churn", f"{ECR}/team/churn"),
    ("ep", "210987654321.dkr.ecr.us-east-1.amazonaws.com/shared/models",
     "210987654321.dkr.ecr.us-east-1.amazonaws.com/shared/models"),
])
def test_ecr_repository_is_a_name_or_uri_in_the_endpoints_region(
        build_make, images, session, name, repository, expected):
    dep = build_make(ecr_repository=repository).create(name, MODEL)
    assert container_of(session, dep)["Image"] == f"{expected}:{images.built[0].tag}"


def test_ecr_repository_in_another_region_is_refused_before_building(build_make, images,
                                                                      session):
    before = sagemaker_inventory(session)
    with pytest.raises(ConfigError, match="SageMaker pulls images from its own region"):
        build_make(ecr_repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml").create(
            "ep", MODEL)
    assert images.built == [] and sagemaker_inventory(session) == before


@pytest.mark.parametrize("step", ["build", "push"])
def test_failed_build_or_push_creates_nothing_and_says_what_to_do(build_make, images, session,
                                                                  step):
    before = sagemaker_inventory(session)
    images.fail = step
    with pytest.raises(BuildError) as info:
        build_make().create("ep", MODEL)
    err = info.value
    assert err.message.startswith(f"{step} of image {ECR}/mldeploy/ep:")
    assert ("scikit-learn==99" if step == "build" else "token has expired") in err.message
    assert "abc123" not in err.message
    assert "nothing was created in SageMaker" in err.hint and "image_uri=" in err.hint
    assert images.pushed == [] and sagemaker_inventory(session) == before


def test_dry_run_shows_the_image_step_without_building(build_make, images, session):
    before = sagemaker_inventory(session)
    plan = build_make().plan(DeployMode.CREATE, "ep", MODEL)
    changes = {(c.action, c.resource.kind): c for c in plan.changes}
    assert changes[(Action.CREATE, "ecr-repository")].resource.id == f"{ECR}/mldeploy/ep"
    image = changes[(Action.CREATE, "image")]
    assert image.resource.id.startswith(f"{ECR}/mldeploy/ep:") and "flask" in image.detail
    assert images.built == [] and sagemaker_inventory(session) == before
    build_make().create("ep", MODEL)
    again = build_make().plan(DeployMode.REPLACE, "ep", MODEL).changes
    assert [c.resource.id for c in again if c.action is Action.KEEP and
            c.resource.kind == "image"] == [image.resource.id]
    assert not [c for c in again if c.resource.kind == "ecr-repository"]


def test_replace_keeps_a_generic_image_but_rebuilds_one_holding_the_old_model(
        make, build_make, images, session, model2):
    make().create("generic", MODEL)  # image_uri + model.tar.gz in S3: the image is reused
    dep = build_make().replace("generic", model2)
    assert container_of(session, dep)["Image"] == IMAGE and images.built == []
    assert "ModelDataUrl" in container_of(session, dep)
    make(model_in_image=True).create("baked", MODEL)  # IMAGE holds MODEL: model2 needs a build
    dep = build_make().replace("baked", model2)
    assert container_of(session, dep)["Image"] == f"{ECR}/mldeploy/baked:{images.built[0].tag}"


# -- list shows mldeploy's endpoints only; cleanup after --no-wait ---------------------------------


def test_list_leaves_out_endpoints_mldeploy_did_not_create(make, session):
    make().create("ours", MODEL)
    sm = session.client("sagemaker")
    sm.create_model(ModelName="theirs-m", ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName="theirs-c", ProductionVariants=[{
        "VariantName": "v", "ModelName": "theirs-m", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="theirs", EndpointConfigName="theirs-c",
                       Tags=[{"Key": "mldeploy:endpoint", "Value": "ours"}])  # not its name
    sm.create_endpoint(EndpointName="plain", EndpointConfigName="theirs-c")
    assert [d.name for d in make().list()] == ["ours"]


def test_no_wait_replace_leftovers_are_removed_by_the_next_replace(make, emulator, session,
                                                                   model2):
    t = make()
    t.create("ep", MODEL)
    emulator.hang_next_update()
    assert t.replace("ep", model2, wait=False).status is Status.UPDATING
    emulator.release()
    assert len([x for x in sagemaker_inventory(session) if ":model/" in x]) == 2  # old stays
    dep = make().replace("ep", model2)  # the same command again: nothing new, old removed
    assert dep.model_uri == model2
    assert {r.id for r in dep.resources} | {f"s3://{BUCKET}"} == sagemaker_inventory(session)


def test_default_pusher_authenticates_with_the_targets_own_ecr_client(
        session, images, events, monkeypatch):
    """An assumed role's session must push too: the default pusher gets the target's client."""
    import mldeploy.container.image as image_api

    seen = []

    def fake_push_image(image, to, *, ecr_client=None, **kw):
        seen.append(ecr_client)
        images.push(next(i for i in images.built if i.reference == to), None)

    monkeypatch.setattr(image_api, "push_image", fake_push_image)
    clients = aws.Clients(session, build_image=images.build)  # default pusher
    SageMakerTarget({**BASE, "image_uri": None}, clients=clients,
                    progress=events.append).create("ep", MODEL)
    assert seen == [clients["ecr"]] and len(images.pushed) == 1


def test_default_builder_labels_the_image_with_the_users_model_uri(
        session, images, events, monkeypatch):
    """The build runs on the downloaded directory; the label must name what the user deployed."""
    import mldeploy.container.image as image_api
    from mldeploy.images import BuildOptions, ImageRequest, docker_build

    calls = []
    built = SimpleNamespace(image_id="sha256:" + "b" * 64)  # what the builder returns
    monkeypatch.setattr(image_api, "build_docker",
                        lambda src, **kw: calls.append((src, kw)) or built)
    uri = "file://" + MODEL  # resolves to the directory MODEL: the label must keep the URI
    clients = aws.Clients(session, push_image=images.push)  # default builder
    SageMakerTarget({**BASE, "image_uri": None}, clients=clients,
                    progress=events.append).create("ep", uri)
    ((src, kw),) = calls
    assert src == MODEL and kw["labels"] == {"io.mldeploy.model.uri": uri}
    assert kw["name"] == images.pushed[0] and kw["engine"] == "flask"
    # credentials in the URI never reach the image
    calls.clear()
    image = ImageRequest(f"{ECR}/r:t", example_model_dir(),
                         "https://alice:s3cr3t@mlflow.example/models/churn", BuildOptions(), "t")
    docker_build(image, events.append)
    assert calls[0][1]["labels"] == {
        "io.mldeploy.model.uri": "https://***@mlflow.example/models/churn"}


def test_model_uri_tag_carries_no_credentials(make, session, monkeypatch):
    import contextlib
    from pathlib import Path

    import mldeploy.model_uri

    monkeypatch.setattr(mldeploy.model_uri, "materialize",
                        lambda uri: contextlib.nullcontext(Path(MODEL)))
    dep = make().create("ep", "https://alice:s3cr3t@mlflow.example/models/churn")
    (model_arn,) = Resource_ids(dep, "model")
    tags = session.client("sagemaker").list_tags(ResourceArn=model_arn)["Tags"]
    assert "s3cr3t" not in json.dumps(tags) and "s3cr3t" not in json.dumps(dep.to_dict())
    assert dep.model_uri == "https://___@mlflow.example/models/churn"  # tags refuse "*"


# -- endpoints mldeploy did not create: refused unless -C adopt=true -------------------------------

from mldeploy.plugins.sagemaker.errors import UnmanagedEndpointError  # noqa: E402


def plain_endpoint(session, name, models, data=None):
    """An endpoint made with plain boto3, as other tooling would: untagged, one variant per
    model (models already existing are shared, not created again)."""
    sm = session.client("sagemaker")
    for m in models:
        if m not in {x["ModelName"] for x in sm.list_models()["Models"]}:
            container = {"Image": IMAGE, **({"ModelDataUrl": data[m]} if data else {})}
            sm.create_model(ModelName=m, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    sm.create_endpoint_config(EndpointConfigName=f"{name}-c", ProductionVariants=[
        {"VariantName": f"v{i}", "ModelName": m, "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1} for i, m in enumerate(models)])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-c")


def snapshot(session, name):
    """The endpoint, its config and models as describe and list_tags show them."""
    sm = session.client("sagemaker")

    def clean(d):
        return {k: v for k, v in d.items() if k != "ResponseMetadata"}
    ep = clean(sm.describe_endpoint(EndpointName=name))
    cfg = clean(sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"]))
    models = [clean(sm.describe_model(ModelName=v["ModelName"]))
              for v in cfg["ProductionVariants"]]
    arns = [ep["EndpointArn"], cfg["EndpointConfigArn"], *(m["ModelArn"] for m in models)]
    return ep, cfg, models, [sm.list_tags(ResourceArn=a)["Tags"] for a in arns]


def test_changing_verbs_refuse_an_endpoint_mldeploy_did_not_create(
        make, session, model2, emulator, capsys, monkeypatch):
    plain_endpoint(session, "theirs", ["theirs-m"])
    before, inventory = snapshot(session, "theirs"), sagemaker_inventory(session)
    t = make()
    for verb, call in [("replace", lambda: t.replace("theirs", model2)),
                       ("add", lambda: t.add("theirs", model2)),
                       ("replace", lambda: t.plan(DeployMode.REPLACE, "theirs", model2)),
                       ("traffic", lambda: t.traffic("theirs", {"v0": 2.0})),
                       ("delete", lambda: t.delete("theirs"))]:
        with pytest.raises(UnmanagedEndpointError) as info:
            call()
        err = info.value
        assert isinstance(err, UsageError) and err.exit_code == 2
        assert err.message == (f"endpoint 'theirs' was not created by mldeploy: {verb} left it "
                               "unchanged") and "-C adopt=true" in err.hint
    with pytest.raises(DeploymentExistsError, match="not created by mldeploy") as info:
        t.create("theirs", MODEL)
    assert "--mode replace -C adopt=true" in info.value.hint
    assert snapshot(session, "theirs") == before and sagemaker_inventory(session) == inventory
    dep = t.get("theirs")  # reading works on any endpoint, and says whose it is
    assert dep.details["managed"] is False and [v.name for v in dep.variants] == ["v0"]
    # from the CLI: exit code 2, one line naming the endpoint and the way out
    monkeypatch.setattr(aws.Clients, "create", staticmethod(lambda *a: aws.Clients(session)))
    code, out, err = run_cli(capsys, "delete", "-t", "sagemaker:/us-east-1", "-n", "theirs")
    assert code == 2 and out == "" and "'theirs' was not created by mldeploy" in err
    assert "adopt=true" in err and snapshot(session, "theirs") == before
    # traffic with adopt: applied, and the endpoint is mldeploy's from then on
    make(adopt=True).traffic("theirs", {"v0": 2.0})
    assert t.get("theirs").details["managed"] is True and "theirs" in [d.name for d in t.list()]


def test_adopt_replace_takes_the_endpoint_over_and_leaves_its_old_resources(
        make, session, model2, events):
    plain_endpoint(session, "theirs", ["theirs-m"], {"theirs-m": "s3://elsewhere/m.tar.gz"})
    inventory = sagemaker_inventory(session)
    plan = make(adopt=True).plan(DeployMode.REPLACE, "theirs", model2)
    kept = {(c.resource.kind, c.resource.id) for c in plan.changes if c.action is Action.KEEP}
    assert kept == {("endpoint-config", "theirs-c"), ("model", "theirs-m")}
    assert not [c for c in plan.changes if c.action is Action.DELETE]
    assert "adopt: tag mldeploy:endpoint=theirs" in str(plan)
    assert sagemaker_inventory(session) == inventory
    dep = make(adopt=True).replace("theirs", model2)
    assert dep.status is Status.READY and dep.model_uri == model2
    assert dep.details["managed"] is True and [v.name for v in dep.variants] == ["v0"]
    assert any("adopted endpoint theirs" in str(e) for e in events)
    assert inventory <= sagemaker_inventory(session)  # its old config and model stay
    again = make().replace("theirs", MODEL)  # managed now: no adopt needed
    assert again.model_uri == MODEL and Resource_ids(dep, "model")[0] not in (
        sagemaker_inventory(session))  # mldeploy's own model of the first replace is removed


def test_adopt_delete_keeps_what_another_endpoint_uses(make, session, emulator, events):
    emulator.strict = False  # a shared model would really be deleted if we asked to
    s3 = session.client("s3")
    data = {m: f"s3://{BUCKET}/theirs/{m}.tar.gz" for m in ("shared-m", "own-m")}
    for url in data.values():
        s3.put_object(Bucket=BUCKET, Key=url.split("/", 3)[3], Body=b"x")
    plain_endpoint(session, "a", ["own-m", "shared-m"], data)
    plain_endpoint(session, "b", ["shared-m"], data)
    b_before = snapshot(session, "b")
    with pytest.raises(UnmanagedEndpointError):
        make().delete("a")
    gone = make(adopt=True).delete("a")
    assert gone.existed and gone.leftover == ()
    removed = {(r.kind, r.id.rsplit("/", 1)[1]) for r in gone.removed}
    assert removed == {("endpoint", "a"), ("endpoint-config", "a-c"), ("model", "own-m")}
    assert snapshot(session, "b") == b_before  # b and the model it shares are untouched
    for url in data.values():  # model data mldeploy did not make stays
        s3.head_object(Bucket=BUCKET, Key=url.split("/", 3)[3])
    assert any("keeping model" in str(e) and "endpoint b uses it" in str(e) for e in events)


def test_adopt_that_cannot_tag_keeps_the_change_and_says_so(make, session, model2, events):
    from botocore.exceptions import ClientError

    plain_endpoint(session, "theirs", ["theirs-m"])

    def refuse(**_):
        raise ClientError({"Error": {"Code": "ValidationException",
                                     "Message": "too many tags"}}, "AddTags")
    session.events.register("before-call.sagemaker.AddTags", refuse)
    try:
        dep = make(adopt=True).replace("theirs", model2)
    finally:
        session.events.unregister("before-call.sagemaker.AddTags", refuse)
    assert dep.status is Status.READY and dep.model_uri == model2  # not rolled back
    assert dep.details["managed"] is False
    assert any("could not adopt endpoint theirs" in str(e) and "too many tags" in str(e)
               for e in events)
