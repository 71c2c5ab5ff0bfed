"""The moto extension itself (mldeploy.testing.moto_sagemaker), driven with plain boto3 as a
user's own pipeline would, so its AWS semantics are pinned down independently of our target."""

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mldeploy.testing.moto_sagemaker import SageMakerEmulator, reset_backends

ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture(scope="module")
def session():
    with mock_aws():
        yield boto3.Session(aws_access_key_id="t", aws_secret_access_key="t",
                            region_name="us-east-1")


@pytest.fixture
def sm(session):
    reset_backends()
    return session.client("sagemaker")


def model(sm, name):
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"})


def config(sm, name, models, serverless=False, weights=None):
    variants = []
    for i, m in enumerate(models):
        v = {"VariantName": f"v{i}", "ModelName": m}
        if serverless:
            v["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 1}
        else:
            v.update(InstanceType="ml.m5.large", InitialInstanceCount=1,
                     InitialVariantWeight=(weights or [1.0] * len(models))[i])
        variants.append(v)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)


def status(sm, name="ep"):
    return sm.describe_endpoint(EndpointName=name)["EndpointStatus"]


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def test_creating_then_in_service_after_duration(sm):
    with SageMakerEmulator(creating_seconds=0.2):
        model(sm, "m1")
        config(sm, "c1", ["m1"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        assert status(sm) == "Creating"
        assert sm.list_endpoints(StatusEquals="Creating")["Endpoints"]
        time.sleep(0.25)
        assert status(sm) == "InService"


def test_create_failure_sets_failed_reason_and_logs(sm, session):
    with SageMakerEmulator() as em:
        model(sm, "m1")
        config(sm, "c1", ["m1"])
        em.fail_next_create("ping failed", logs=["boom"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        ep = sm.describe_endpoint(EndpointName="ep")
        assert (ep["EndpointStatus"], ep["FailureReason"]) == ("Failed", "ping failed")
        logs = session.client("logs")
        (stream,) = logs.describe_log_streams(
            logGroupName="/aws/sagemaker/Endpoints/ep")["logStreams"]
        events = logs.get_log_events(logGroupName="/aws/sagemaker/Endpoints/ep",
                                     logStreamName=stream["logStreamName"])["events"]
        assert [e["message"] for e in events] == ["boom"]
        with pytest.raises(ClientError, match="in-progress|Cannot update"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="c1")


def test_existing_names_are_refused(sm):
    with SageMakerEmulator():
        model(sm, "m1")
        with pytest.raises(ClientError, match="already existing model"):
            model(sm, "m1")
        config(sm, "c1", ["m1"])
        with pytest.raises(ClientError, match="already existing endpoint configuration"):
            config(sm, "c1", ["m1"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        with pytest.raises(ClientError, match="already existing endpoint"):
            sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")


def test_update_endpoint_semantics(sm):
    with SageMakerEmulator(updating_seconds=0.2) as em:
        for m in ("m1", "m2"):
            model(sm, m)
        config(sm, "c1", ["m1"])
        config(sm, "c2", ["m2"])
        with pytest.raises(ClientError, match="Could not find endpoint") as info:
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
        assert code(info) == "ValidationException"
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        with pytest.raises(ClientError, match="Could not find endpoint configuration"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="nope")
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
        ep = sm.describe_endpoint(EndpointName="ep")
        assert ep["EndpointStatus"] == "Updating" and ep["EndpointConfigName"] == "c1"
        assert ep["PendingDeploymentSummary"]["EndpointConfigName"] == "c2"
        with pytest.raises(ClientError, match="in-progress"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="c1")
        with pytest.raises(ClientError, match="strict"):
            sm.delete_endpoint_config(EndpointConfigName="c2")
        with pytest.raises(ClientError, match="strict"):
            sm.delete_model(ModelName="m1")
        time.sleep(0.25)
        ep = sm.describe_endpoint(EndpointName="ep")
        assert (ep["EndpointStatus"], ep["EndpointConfigName"]) == ("InService", "c2")
        assert "PendingDeploymentSummary" not in ep
        sm.delete_endpoint_config(EndpointConfigName="c1")  # no longer used: allowed
        assert em.update_requests[-1]["EndpointConfigName"] == "c2"


def test_failed_update_rolls_back_with_reason(sm):
    with SageMakerEmulator() as em:
        for m in ("m1", "m2"):
            model(sm, m)
        config(sm, "c1", ["m1"])
        config(sm, "c2", ["m2"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        em.fail_next_update("health check failed")
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
        ep = sm.describe_endpoint(EndpointName="ep")
        assert (ep["EndpointStatus"], ep["EndpointConfigName"], ep["FailureReason"]) == (
            "InService", "c1", "health check failed")


def test_retain_all_variant_properties_keeps_weights_and_counts(sm):
    with SageMakerEmulator():
        for m in ("m1", "m2"):
            model(sm, m)
        config(sm, "c1", ["m1", "m2"], weights=[1.0, 1.0])
        config(sm, "c2", ["m2", "m1"], weights=[5.0, 5.0])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
            {"VariantName": "v0", "DesiredWeight": 3.0, "DesiredInstanceCount": 4}])
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2",
                           RetainAllVariantProperties=True)
        v = {x["VariantName"]: x for x in
             sm.describe_endpoint(EndpointName="ep")["ProductionVariants"]}
        assert (v["v0"]["CurrentWeight"], v["v0"]["CurrentInstanceCount"]) == (3.0, 4)
        config(sm, "c3", ["m1", "m2"], weights=[7.0, 7.0])
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c3")
        v = {x["VariantName"]: x for x in
             sm.describe_endpoint(EndpointName="ep")["ProductionVariants"]}
        assert (v["v0"]["CurrentWeight"], v["v0"]["CurrentInstanceCount"]) == (7.0, 1)


def test_realtime_cannot_become_serverless(sm):
    with SageMakerEmulator():
        model(sm, "m1")
        config(sm, "c1", ["m1"])
        config(sm, "s1", ["m1"], serverless=True)
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        with pytest.raises(ClientError, match="serverless"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="s1")
        assert status(sm) == "InService"


def test_invoke_checks_endpoint_and_names_serving_model(sm, session):
    rt = session.client("sagemaker-runtime")
    body = json.dumps({"inputs": [[1], [2]]}).encode()
    with SageMakerEmulator(deleting_seconds=0.2) as em:
        with pytest.raises(ClientError, match="not found"):
            rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json")
        model(sm, "m1")
        config(sm, "c1", ["m1"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        r = rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json")
        assert json.loads(r["Body"].read()) == {"predictions": ["m1", "m1"]}
        assert r["InvokedProductionVariant"] == "v0"
        em.fail_next_invoke(503, "overloaded")
        with pytest.raises(ClientError) as info:
            rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json")
        assert code(info) == "ModelError" and info.value.response["OriginalStatusCode"] == 503
        sm.delete_endpoint(EndpointName="ep")
        assert status(sm) == "Deleting"
        with pytest.raises(ClientError, match="not ready"):
            rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json")
        time.sleep(0.25)
        assert sm.list_endpoints()["Endpoints"] == []


def test_stop_restores_moto():
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    before = SageMakerModelBackend.create_model
    with SageMakerEmulator():
        assert SageMakerModelBackend.create_model is not before
        assert hasattr(SageMakerResponse, "update_endpoint")
    assert SageMakerModelBackend.create_model is before
    assert not hasattr(SageMakerResponse, "update_endpoint")


def test_autoscaled_variant_instance_type_cannot_change(sm, session):
    with SageMakerEmulator():
        model(sm, "m1")
        config(sm, "c1", ["m1"])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        session.client("application-autoscaling").register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId="endpoint/ep/variant/v0",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1,
            MaxCapacity=2)
        sm.create_endpoint_config(EndpointConfigName="c2", ProductionVariants=[{
            "VariantName": "v0", "ModelName": "m1", "InstanceType": "ml.c5.large",
            "InitialInstanceCount": 1}])
        with pytest.raises(ClientError, match="automatic scaling"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")


def test_refused_deletes_are_access_denied(sm):
    with SageMakerEmulator() as em:
        model(sm, "m1")
        em.refuse_deletes("m1")
        with pytest.raises(ClientError) as info:
            sm.delete_model(ModelName="m1")
        assert code(info) == "AccessDeniedException"


def test_async_endpoints_answer_through_s3(sm, session):
    s3, rt = session.client("s3"), session.client("sagemaker-runtime")
    with SageMakerEmulator():
        s3.create_bucket(Bucket="io-bucket")
        s3.put_object(Bucket="io-bucket", Key="in.json", Body=json.dumps({"inputs": [[1], [2]]}))
        model(sm, "m1")
        sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[{
            "VariantName": "v0", "ModelName": "m1", "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}], AsyncInferenceConfig={
                "OutputConfig": {"S3OutputPath": "s3://io-bucket/out"}})
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        with pytest.raises(ClientError, match="asynchronous"):
            rt.invoke_endpoint(EndpointName="ep", Body=b"{}", ContentType="application/json")
        r = rt.invoke_endpoint_async(EndpointName="ep", InputLocation="s3://io-bucket/in.json",
                                     ContentType="application/json")
        key = r["OutputLocation"].removeprefix("s3://io-bucket/")
        assert key.startswith("out/") and r["FailureLocation"].startswith("s3://io-bucket/out/")
        obj = s3.get_object(Bucket="io-bucket", Key=key)
        assert json.loads(obj["Body"].read()) == {"predictions": ["m1", "m1"]}
        assert obj["ContentType"] == "application/json"
