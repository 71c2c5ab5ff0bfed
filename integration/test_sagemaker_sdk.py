"""The SageMaker Python SDK, v2 and v3, as a user's unchanged client code against mldeploy.

The SDK runs in its own venv (``scripts/install-sagemaker-sdk.sh``: ``.venv-sagemaker-v2`` /
``.venv-sagemaker-v3``, laid over ``.venv``; ``scripts/test.sh`` starts it in the background and
these tests wait for it), so the SDK's pins never touch mldeploy's own environment. Its code is run
as a subprocess pointed at the servers only through the standard ``AWS_ENDPOINT_URL*`` variables:

- the offline SageMaker (``mldeploy.testing.sagemaker_containers``: moto's control plane, each
  endpoint's mldeploy-built image running on the real Docker engine) with an endpoint deployed by
  mldeploy: v2 ``Predictor`` with ``JSONSerializer`` and headerless ``CSVSerializer``, v3
  ``sagemaker.core.resources.Endpoint.invoke``, each compared with boto3's plain
  ``invoke_endpoint`` of the same rows (differential);
- v2 ``Model(image_uri=..., model_data=...).deploy(...)`` and v3 ``ModelBuilder(image_uri=...,
  s3_model_data_url=..., role_arn=...)`` deploying an mldeploy-built image with a model tarball
  from the emulated S3 (the container serves the tarball's model, not the one in the image);
- the README's "SageMaker SDK clients" snippet, extracted from README.md and run as it is;
- the local target's gateway (``POST /endpoints/NAME/invocations``) reached by both SDKs.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from mldeploy.testing.aws import ENV_CLEARED, emulator_env, moto_server
from mldeploy.testing.conformance import example_model_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
MODEL = example_model_dir()
PAYLOAD = json.loads((MODEL / "serving_input_example.json").read_text())
ROWS = PAYLOAD["dataframe_split"]["data"]
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "mldeploy-sdk-it:1"
BUCKET = "mldeploy-sdk-it"
SDK_WAIT_SECONDS = float(os.environ.get("MLDEPLOY_SAGEMAKER_SDK_WAIT", "1500"))


# -- the SDK venvs ---------------------------------------------------------------------------

def sdk_python(version: str) -> str:
    """The overlay venv's python for SDK ``version`` ("v2"/"v3"), waiting while
    ``scripts/install-sagemaker-sdk.sh --background`` is still installing it; skip otherwise."""
    explicit = os.environ.get(f"MLDEPLOY_SAGEMAKER_SDK_{version.upper()}_PYTHON")
    if explicit:
        return explicit
    venv = REPO / f".venv-sagemaker-{version}"
    deadline = time.monotonic() + SDK_WAIT_SECONDS
    while _installing(venv / ".mldeploy-installing") and time.monotonic() < deadline:
        time.sleep(2)
    if (venv / ".mldeploy-ready").exists():
        return str(venv / "bin" / "python")
    log = REPO / f".venv-sagemaker-{version}.log"
    if (venv / ".mldeploy-failed").exists():
        pytest.skip(f"the SageMaker SDK {version} did not install: "
                    f"{log.read_text(errors='replace')[-600:] if log.exists() else ''}")
    if _installing(venv / ".mldeploy-installing"):
        pytest.skip(f"the SageMaker SDK {version} was still installing after "
                    f"{SDK_WAIT_SECONDS:.0f} s")
    pytest.skip(f"the SageMaker SDK {version} is not installed: "
                f"run bash scripts/install-sagemaker-sdk.sh {version}")


def _installing(marker: Path) -> bool:
    """The installer is still at work: its marker names a live process (or was written by
    ``--background`` moments ago, before the installer wrote its pid)."""
    try:
        text = marker.read_text().strip()
        age = time.time() - marker.stat().st_mtime
    except OSError:
        return False
    if not text:
        return age < 120
    try:
        os.kill(int(text), 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


@pytest.fixture(scope="module")
def v2() -> str:
    return sdk_python("v2")


@pytest.fixture(scope="module")
def v3() -> str:
    return sdk_python("v3")


def run_sdk(python: str, code: str, env: dict[str, str], *args: str,
            timeout: float = 600) -> Any:
    """Run ``code`` (a user's script) with the SDK's python; its last stdout line is JSON."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("AWS_ENDPOINT_URL") and k not in ENV_CLEARED}
    full.update(env)
    full.update({"SAGEMAKER_SUPPRESS_V2_WARNING": "1", "PYTHONWARNINGS": "ignore"})
    proc = subprocess.run([python, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=timeout, env=full, check=False)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last[last.index("{"):])  # v2's wait prints "-!" progress before it


# -- the offline SageMaker with an endpoint mldeploy deployed --------------------------------

@pytest.fixture(scope="module")
def image(docker_engine: Any, base_image: str) -> str:
    from mldeploy.container.image import build_docker

    build_docker(str(MODEL), IMAGE, base_image=base_image)
    return IMAGE


@pytest.fixture(scope="module")
def sagemaker_env(docker_engine: Any, image: str):
    """moto server + the container emulator on 127.0.0.1; the env that points clients at it."""
    from mldeploy.testing.sagemaker_containers import ContainerSageMakerEmulator, owned_by

    with moto_server() as url, pytest.MonkeyPatch.context() as mp:
        env = emulator_env(url)
        for var in list(os.environ):
            if var.startswith("AWS_ENDPOINT_URL") or var in ENV_CLEARED:
                mp.delenv(var, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        with ContainerSageMakerEmulator(docker_engine, creating_seconds=0.2,
                                        updating_seconds=0.2, startup_seconds=180):
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield env
        left = docker_engine.containers.list(all=True, filters=owned_by(os.getpid()))
        for c in left:
            c.remove(force=True)


@pytest.fixture(scope="module")
def churn(sagemaker_env: dict[str, str], image: str) -> str:
    """An endpoint deployed by mldeploy (the example model in an S3 tarball)."""
    import mldeploy

    dep = mldeploy.deploy("sagemaker:/us-east-1", name="churn", model_uri=str(MODEL),
                          config={"execution_role_arn": ROLE, "image_uri": image,
                                  "bucket": BUCKET, "poll_interval_seconds": 0.2,
                                  "timeout_seconds": 300})
    assert dep.status.value == "ready", dep
    return "churn"


def boto3_invoke(name: str, body: bytes, content_type: str) -> Any:
    rt = boto3.client("sagemaker-runtime")
    resp = rt.invoke_endpoint(EndpointName=name, ContentType=content_type, Body=body)
    return json.loads(resp["Body"].read())


@pytest.fixture(scope="module")
def constant_model_data(sagemaker_env: dict[str, str], tmp_path_factory) -> str:
    """``s3://.../model.tar.gz`` of a model answering 7 for every row (the image holds the example
    model, answering [1, 1, 0]: a 7 proves the tarball is what is served)."""
    import cloudpickle
    import numpy as np
    from sklearn.dummy import DummyClassifier

    root = tmp_path_factory.mktemp("constant") / "model"
    shutil.copytree(MODEL, root)
    clf = DummyClassifier(strategy="constant", constant=7).fit(np.zeros((2, 20)), [7, 0])
    (root / "model.pkl").write_bytes(cloudpickle.dumps(clf))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.iterdir()):
            tar.add(path, arcname=path.name)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="sdk/constant/model.tar.gz",
                                  Body=buf.getvalue())
    return f"s3://{BUCKET}/sdk/constant/model.tar.gz"


def remove_sdk_endpoint(name: str) -> None:
    """What the SDK created (not mldeploy's to delete): endpoint, its config, its models (the
    emulator stops their containers)."""
    sm = boto3.client("sagemaker")
    desc = sm.describe_endpoint(EndpointName=name)
    config = sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    sm.delete_endpoint(EndpointName=name)
    sm.delete_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    for variant in config["ProductionVariants"]:
        sm.delete_model(ModelName=variant["ModelName"])


def csv_body(rows: list[list[Any]]) -> bytes:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()


# -- v2 ---------------------------------------------------------------------------------------

V2_PREDICTOR = """
    import json, sys
    import sagemaker
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer, JSONSerializer

    name, payload, rows = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    predictor = Predictor(name, sagemaker_session=sagemaker.Session(),
                          serializer=JSONSerializer(), deserializer=JSONDeserializer())
    out = {"json": predictor.predict(payload)}
    predictor.serializer = CSVSerializer()
    out["csv"] = predictor.predict(rows)
    out["csv_content_type"] = predictor.content_type
    print(json.dumps(out))
"""


def test_v2_predictor_json_and_csv_match_boto3(v2, sagemaker_env, churn):
    got = run_sdk(v2, V2_PREDICTOR, sagemaker_env, churn, json.dumps(PAYLOAD), json.dumps(ROWS))
    assert got["json"] == boto3_invoke(churn, json.dumps(PAYLOAD).encode(), "application/json")
    assert got["json"]["predictions"] == [1, 1, 0]
    assert got["csv_content_type"] == "text/csv"
    assert got["csv"] == boto3_invoke(churn, csv_body(ROWS), "text/csv")
    assert got["csv"]["predictions"] == [1, 1, 0]


V2_DEPLOY_WITHOUT_PREDICTOR_CLS = """
    import json, sys
    import sagemaker
    from sagemaker.model import Model

    image, data, role, name = sys.argv[1:5]
    model = Model(image_uri=image, model_data=data, role=role,
                  sagemaker_session=sagemaker.Session())
    ret = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                       endpoint_name=name, wait=False)
    print(json.dumps({"returned": repr(ret), "endpoint": model.endpoint_name}))
"""


def readme_snippet() -> str:
    """The Python block of the README's "SageMaker SDK clients" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("### SageMaker SDK clients", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's SageMaker SDK clients section has no python block"
    return blocks[0]


def test_v2_model_deploy_returns_none_without_predictor_cls(v2, sagemaker_env, image,
                                                            constant_model_data):
    got = run_sdk(v2, V2_DEPLOY_WITHOUT_PREDICTOR_CLS, sagemaker_env, image,
                  constant_model_data, ROLE, "sdk-trap")
    assert got == {"returned": "None", "endpoint": "sdk-trap"}  # the trap the README names
    sm = boto3.client("sagemaker")
    for _ in range(600):
        if sm.describe_endpoint(EndpointName="sdk-trap")["EndpointStatus"] != "Creating":
            break
        time.sleep(0.5)
    assert sm.describe_endpoint(EndpointName="sdk-trap")["EndpointStatus"] == "InService"
    assert boto3_invoke("sdk-trap", csv_body(ROWS), "text/csv")["predictions"] == [7, 7, 7]
    remove_sdk_endpoint("sdk-trap")


def test_readme_snippet_deploys_an_mldeploy_image_with_the_v2_sdk(v2, sagemaker_env, image,
                                                                  constant_model_data):
    """The README's snippet, as written, with its placeholders (IMAGE, MODEL_DATA, ROLE) set."""
    code = (f"IMAGE, MODEL_DATA, ROLE = {image!r}, {constant_model_data!r}, {ROLE!r}\n"
            + readme_snippet()
            + "\nimport json; print(json.dumps({'rows': result, 'name': predictor.endpoint_name}))")
    got = run_sdk(v2, code, sagemaker_env)
    assert got["rows"]["predictions"] == [7, 7]
    assert boto3_invoke(got["name"], csv_body(ROWS), "text/csv")["predictions"] == [7, 7, 7]
    import mldeploy

    assert mldeploy.get("sagemaker:/us-east-1", name=got["name"]).status.value == "ready"
    remove_sdk_endpoint(got["name"])


# -- v3 ---------------------------------------------------------------------------------------

V3_INVOKE = """
    import json, sys
    from sagemaker.core.resources import Endpoint

    name, payload, rows_csv = sys.argv[1], sys.argv[2], sys.argv[3]
    endpoint = Endpoint.get(endpoint_name=name)
    out = {"status": endpoint.endpoint_status}
    resp = endpoint.invoke(body=payload, content_type="application/json",
                           accept="application/json")
    out["json"] = json.loads(resp.body.read())
    resp = endpoint.invoke(body=rows_csv, content_type="text/csv")
    out["csv"] = json.loads(resp.body.read())
    print(json.dumps(out))
"""


def test_v3_endpoint_invoke_matches_boto3(v3, sagemaker_env, churn):
    got = run_sdk(v3, V3_INVOKE, sagemaker_env, churn, json.dumps(PAYLOAD),
                  csv_body(ROWS).decode())
    assert got["status"] == "InService"
    assert got["json"] == boto3_invoke(churn, json.dumps(PAYLOAD).encode(), "application/json")
    assert got["csv"] == boto3_invoke(churn, csv_body(ROWS), "text/csv")
    assert got["json"]["predictions"] == [1, 1, 0]


V3_MODEL_BUILDER = """
    import json, sys
    from sagemaker.serve import ModelBuilder

    image, data, role, name, rows_csv = sys.argv[1:6]
    try:  # a role that does not exist is refused before anything is created
        ModelBuilder(image_uri=image, s3_model_data_url=data, instance_type="ml.m5.large",
                     role_arn=role.rsplit("/", 1)[0] + "/nobody").build()
        refused = None
    except Exception as exc:
        refused = str(exc)[:500]
    builder = ModelBuilder(image_uri=image, s3_model_data_url=data, role_arn=role,
                           instance_type="ml.m5.large")
    model = builder.build()
    endpoint = builder.deploy(endpoint_name=name, initial_instance_count=1)
    resp = endpoint.invoke(body=rows_csv, content_type="text/csv")
    print(json.dumps({"model": model.model_name, "endpoint": endpoint.endpoint_name,
                      "status": endpoint.endpoint_status, "answer": json.loads(resp.body.read()),
                      "refused": refused}))
"""

TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def test_v3_model_builder_deploys_an_mldeploy_image(v3, sagemaker_env, image,
                                                     constant_model_data):
    """The v3 pass-through path (image + S3 model data, no model object): it validates the role
    with IAM SimulatePrincipalPolicy (a role that does not exist is refused) and reads describe_*
    answers into typed resources, both of which the emulator answers as SageMaker does."""
    role = boto3.client("iam").create_role(
        RoleName="sdk-v3-exec", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    models_before = {m["ModelName"] for m in boto3.client("sagemaker").list_models()["Models"]}
    got = run_sdk(v3, V3_MODEL_BUILDER, sagemaker_env, image, constant_model_data, role,
                  "sdk-v3", csv_body(ROWS[:2]).decode())
    assert got["refused"] and "nobody" in got["refused"], got  # NoSuchEntity from the emulator
    models_now = {m["ModelName"] for m in boto3.client("sagemaker").list_models()["Models"]}
    assert models_now - models_before == {got["model"]}  # the refused build created nothing
    assert got["endpoint"] == "sdk-v3" and got["status"] == "InService"
    assert got["answer"] == {"predictions": [7, 7]}
    assert got["answer"] == boto3_invoke("sdk-v3", csv_body(ROWS[:2]), "text/csv")
    model = boto3.client("sagemaker").describe_model(ModelName=got["model"])
    assert model["PrimaryContainer"]["Image"] == image
    assert model["PrimaryContainer"]["ModelDataUrl"] == constant_model_data
    assert "VpcConfig" not in model  # never set: omitted, as SageMaker does
    remove_sdk_endpoint("sdk-v3")


# -- the local target's gateway ---------------------------------------------------------------

@pytest.fixture(scope="module")
def local_gateway(docker_engine: Any, base_image: str, tmp_path_factory) -> dict[str, str]:
    """The example model on the local target; the env pointing SageMaker runtime at its gateway."""
    import mldeploy

    state = tmp_path_factory.mktemp("local-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLDEPLOY_LOCAL_STATE_DIR", str(state))
        dep = mldeploy.deploy("local", name="churn", model_uri=str(MODEL),
                              config={"base_image": base_image, "cpus": "1", "memory": "2g"})
        try:
            assert dep.url, dep
            yield {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": dep.url.rstrip("/"),
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                   "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        finally:
            mldeploy.delete("local", name="churn")


V3_INVOKE_ONLY = """
    import json, sys
    from sagemaker.core.resources import Endpoint

    endpoint = Endpoint(endpoint_name=sys.argv[1])  # no control plane: the runtime only
    resp = endpoint.invoke(body=sys.argv[2], content_type="application/json")
    print(json.dumps(json.loads(resp.body.read())))
"""


def test_both_sdks_reach_the_local_gateway(v2, v3, local_gateway):
    rt = boto3.client("sagemaker-runtime",
                      endpoint_url=local_gateway["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"],
                      region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    want_json = json.loads(rt.invoke_endpoint(EndpointName="churn", Body=json.dumps(PAYLOAD),
                                              ContentType="application/json")["Body"].read())
    want_csv = json.loads(rt.invoke_endpoint(EndpointName="churn", Body=csv_body(ROWS),
                                             ContentType="text/csv")["Body"].read())
    assert want_json["predictions"] == want_csv["predictions"] == [1, 1, 0]
    got = run_sdk(v2, V2_PREDICTOR, local_gateway, "churn", json.dumps(PAYLOAD), json.dumps(ROWS))
    assert got["json"] == want_json and got["csv"] == want_csv
    assert run_sdk(v3, V3_INVOKE_ONLY, local_gateway, "churn", json.dumps(PAYLOAD)) == want_json
