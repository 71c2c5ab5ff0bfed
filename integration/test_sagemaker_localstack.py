"""One run over two emulators, as against real AWS: LocalStack (host mode, no image, bound to
127.0.0.1) serves S3, STS, IAM and CloudWatch Logs; the moto server (with mldeploy's SageMaker
extension) serves SageMaker, its runtime and application-autoscaling, which LocalStack's
community edition does not have (it answers 501 and must not be sent those calls). The split is
made only with the standard per-service ``AWS_ENDPOINT_URL_<SERVICE>`` variables.

LocalStack needs its own Python 3.13 venv (its runtime extra pins boto3 and installs a moto
fork, so never in the project's venv). The test looks for it at ``$MLDEPLOY_LOCALSTACK_PYTHON``
or ``.venv-localstack/bin/python`` and skips, saying how to make it, when there is none::

    python3.13 -m venv .venv-localstack
    .venv-localstack/bin/pip install 'localstack-core[runtime]==2026.3.0' 'cbor2<6' \\
        'pyopenssl>=25,<26' 'cryptography>=45.0.7,<47' service-identity
"""

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import boto3
import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.registry import get_target
from mldeploy.target import Status
from mldeploy.testing.aws import apply_env, emulator_env, free_port, moto_server, wait_http_ok
from mldeploy.testing.conformance import example_model_dir
from mldeploy.testing.moto_sagemaker import SageMakerEmulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::000000000000:role/sagemaker-exec"
IMAGE = "000000000000.dkr.ecr.us-east-1.amazonaws.com/mldeploy-serve:1"
MODEL = str(example_model_dir())
MOTO_SERVICES = ("sagemaker", "sagemaker-runtime", "application-autoscaling")


def localstack_python() -> Path | None:
    given = os.environ.get("MLDEPLOY_LOCALSTACK_PYTHON")
    candidates = [Path(given)] if given else [ROOT / ".venv-localstack" / "bin" / "python"]
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture(scope="module")
def localstack(tmp_path_factory):
    python = localstack_python()
    if python is None:
        pytest.skip("no LocalStack venv (set MLDEPLOY_LOCALSTACK_PYTHON or create "
                    ".venv-localstack as this module's docstring shows)")
    check = subprocess.run([str(python), "-c", "import localstack.runtime.main"],
                           capture_output=True, timeout=120)
    if check.returncode != 0:
        pytest.skip(f"{python} cannot import localstack: {check.stderr.decode()[-200:]}")
    port = free_port()
    home = tmp_path_factory.mktemp("localstack")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "GATEWAY_SERVER": "hypercorn", "GATEWAY_LISTEN": f"127.0.0.1:{port}",
           "DNS_ADDRESS": "0", "DISABLE_EVENTS": "1", "SKIP_SSL_CERT_DOWNLOAD": "1",
           "OVERRIDE_IN_DOCKER": "0", "LOCALSTACK_VOLUME_DIR": str(home / "volume"),
           "SERVICES": "s3,sts,iam,logs"}
    log = open(home / "localstack.log", "wb")
    proc = subprocess.Popen([str(python), "-m", "localstack.runtime.main"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http_ok(f"{url}/_localstack/health", proc, timeout=60):
            tail = (home / "localstack.log").read_text(errors="replace")[-300:]
            pytest.skip(f"LocalStack did not start on 127.0.0.1:{port}: {tail}")
        yield url
    finally:
        # SIGTERM often never finishes: a grace period, then SIGKILL (our own process only)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def moto():
    with moto_server() as url:
        yield url


@pytest.fixture
def env(localstack, moto, monkeypatch):
    apply_env(monkeypatch, emulator_env(localstack, per_service={s: moto for s in MOTO_SERVICES}))
    with SageMakerEmulator() as em:
        yield em


def test_endpoints_are_split_by_service(env, localstack, moto):
    for service in ("s3", "sts", "logs", "iam"):
        assert boto3.client(service).meta.endpoint_url == localstack, service
    for service in MOTO_SERVICES:
        assert boto3.client(service).meta.endpoint_url == moto, service


def test_deploy_with_artifacts_in_localstack_and_sagemaker_in_moto(env, localstack):
    import localstack_client.session

    ls_s3 = localstack_client.session.Session(
        localstack_host=localstack.removeprefix("http://")).client("s3")
    assert ls_s3.meta.endpoint_url == localstack
    t = get_target("sagemaker:/us-east-1", {"execution_role_arn": ROLE, "image_uri": IMAGE,
                                            "poll_interval_seconds": 0.05})
    dep = t.create("ls-ep", MODEL)   # no bucket given: the default one is made in LocalStack
    assert dep.status is Status.READY
    bucket = "mldeploy-000000000000-us-east-1"   # LocalStack's STS account
    assert bucket in [b["Name"] for b in ls_s3.list_buckets()["Buckets"]]
    (url,) = [r.id for r in dep.resources if r.kind == "s3-object"]
    key = url.removeprefix(f"s3://{bucket}/")
    tar = tarfile.open(fileobj=io.BytesIO(ls_s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert "MLmodel" in tar.getnames()
    gone = t.delete("ls-ep")
    assert gone.existed and ls_s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_failure_reports_container_log_lines_from_cloudwatch_logs(env, localstack):
    logs = boto3.client("logs")
    group = "/aws/sagemaker/Endpoints/ls-fail"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="primary/i-0abc")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="primary/i-0abc", logEvents=[
        {"timestamp": now, "message": "Traceback (most recent call last):"},
        {"timestamp": now + 1, "message": '  File "/opt/mldeploy/serve.py", line 9, in load'},
        {"timestamp": now + 2, "message": "ModuleNotFoundError: No module named 'sklearn'"}])
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ls-fail-bucket")
    t = get_target("sagemaker:/us-east-1", {"execution_role_arn": ROLE, "image_uri": IMAGE,
                                            "bucket": "ls-fail-bucket",
                                            "poll_interval_seconds": 0.05})
    env.fail_next_create("The primary container did not pass the ping health check.")
    with pytest.raises(DeploymentFailedError) as info:
        t.create("ls-fail", MODEL)
    msg = info.value.message
    assert "ping health check" in msg and "No module named 'sklearn'" in msg
    assert "File \"" not in msg and "Traceback" not in msg
    assert s3.list_objects_v2(Bucket="ls-fail-bucket").get("KeyCount", 0) == 0
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == [] or all(
        e["EndpointName"] != "ls-fail" for e in boto3.client("sagemaker").list_endpoints()[
            "Endpoints"])
