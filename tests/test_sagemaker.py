"""The SageMaker target against moto (mock_aws) extended by mldeploy.testing's emulator."""

import os

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
