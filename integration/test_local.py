"""The local target on the real Docker engine (host network, everything on 127.0.0.1): the
conformance suite, replace and failed replace under a steady client, add + traffic over 1,000
requests, invoke through the CLI, the Python API and boto3's sagemaker-runtime client, delete.

Model images are content-hashed, so each model is built once (and reused by later sessions while
the engine keeps it). Containers run with ``-C cpus=1 -C memory=2g``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mldeploy.errors import DeploymentFailedError
from mldeploy.plugins.local import LocalTarget
from mldeploy.plugins.local._client import ContainerSpec, Engine
from mldeploy.plugins.local._resources import LABEL_HOME, home_id
from mldeploy.plugins.local.testing import gateway_inventory, gateway_pids
from mldeploy.target import Status
from mldeploy.testing.conformance import TargetConformance, example_model_dir

# an image build (first use of a model) can take minutes on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REQUEST = (example_model_dir() / "serving_input_example.json").read_bytes()
EXAMPLE_ANSWER = [1, 1, 0]
CONSTANT = 7
MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example model with its classifier swapped for one that always answers 7: the same
    signature and requirements (so its image reuses the dependency layers), other predictions."""
    import cloudpickle
    import numpy as np
    from sklearn.dummy import DummyClassifier

    dst = tmp_path_factory.mktemp("models") / "constant"
    shutil.copytree(example_model_dir(), dst)
    clf = DummyClassifier(strategy="constant", constant=CONSTANT)
    clf.fit(np.zeros((2, 20)), [CONSTANT, 0])
    (dst / "model.pkl").write_bytes(cloudpickle.dumps(clf))
    return str(dst)


@pytest.fixture
def local(state_dir: Path, base_image: str, docker_engine: Any):
    def make(**config: Any) -> LocalTarget:
        return LocalTarget({"state_dir": str(state_dir), "base_image": base_image, "cpus": 1,
                            "memory": "2g", **config}, clients=docker_engine)

    return make


def _running(docker_engine: Any, state_dir: Path) -> set[str]:
    return {c.name for c in docker_engine.containers.list(
        all=True, filters={"label": f"{LABEL_HOME}={home_id(state_dir)}"})}


class _FailNext(Engine):
    """The real engine; the next container is pointed at a model path named after the reason,
    so the server exits at start and prints the reason into its log."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.reason: str | None = None

    def run(self, spec: ContainerSpec) -> Any:
        if self.reason:
            spec = ContainerSpec(**{**spec.__dict__, "env": {
                **spec.env, "MLDEPLOY_MODEL_URI": f"/opt/ml/{self.reason}"}})
            self.reason = None
        return super().run(spec)


class TestLocalDockerConformance(TargetConformance):
    @pytest.fixture
    def engine(self, docker_engine: Any) -> _FailNext:
        return _FailNext(docker_engine)

    @pytest.fixture
    def target(self, local, engine, state_dir, base_image):
        return LocalTarget({"state_dir": str(state_dir), "base_image": base_image, "cpus": 1,
                            "memory": "2g"}, clients=engine)

    @pytest.fixture
    def other_model_uri(self, constant_model: str) -> str:
        return constant_model

    @pytest.fixture
    def inventory(self, docker_engine, state_dir):
        def now() -> set[str]:
            return _running(docker_engine, state_dir) | gateway_inventory(state_dir)

        return now

    @pytest.fixture
    def fail_next_deploy(self, engine: _FailNext):
        def fail(reason: str) -> None:
            engine.reason = reason

        return fail


def _post(conn: http.client.HTTPConnection, path: str = "/invocations") -> tuple[int, Any]:
    conn.request("POST", path, body=REQUEST, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_replace_and_failed_replace_under_a_steady_client(local, constant_model,
                                                          broken_example_model, docker_engine,
                                                          state_dir):
    t = local()
    dep = t.create("steady", str(example_model_dir()))
    port = dep.details["invocations_url"].split(":")[-1].split("/")[0]
    answers: list[list[Any]] = [[], []]  # per client thread, in its own order
    failures: list[str] = []
    stop = threading.Event()

    def client(mine: list[Any]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        while not stop.is_set():
            try:
                status, doc = _post(conn)
                if status == 200:
                    mine.append(doc["predictions"])
                else:
                    failures.append(f"{status} {doc}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
            time.sleep(0.005)
        conn.close()

    threads = [threading.Thread(target=client, args=(mine,), daemon=True) for mine in answers]
    for th in threads:
        th.start()
    try:
        time.sleep(1)
        new = t.replace("steady", constant_model)
        assert new.status is Status.READY and new.model_uri == constant_model
        switched = [len(mine) for mine in answers]
        time.sleep(1)
        with pytest.raises(DeploymentFailedError) as info:
            t.replace("steady", str(broken_example_model))
        time.sleep(1)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert failures == []
    for mine, at_switch in zip(answers, switched, strict=True):
        assert len(mine) > 25, "each client kept sending throughout"
        assert mine[0] == EXAMPLE_ANSWER and mine[-1] == [CONSTANT] * 3
        first_new = mine.index([CONSTANT] * 3)
        assert first_new <= at_switch, "the new model answers once replace returned"
        assert all(a == [CONSTANT] * 3 for a in mine[first_new:]), "never back to the old model"
    err = info.value
    assert "did not become healthy" in err.message and "last lines of its log" in err.message
    assert "keeps serving" in err.hint and err.leftover == []
    assert _running(docker_engine, state_dir) == {new.resources[1].id}
    assert t.get("steady").model_uri == constant_model


def test_add_and_traffic_split_1000_requests(local, constant_model):
    t = local()
    t.create("split", str(example_model_dir()))
    dep = local(variant_name="canary", weight=1).add("split", constant_model)
    assert [v.name for v in dep.variants] == ["primary", "canary"]
    t.traffic("split", {"primary": 3, "canary": 1})
    port = int(dep.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen: Counter[str] = Counter()
    for _ in range(1000):
        conn.request("POST", "/invocations", body=REQUEST,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        preds = json.loads(resp.read())["predictions"]
        variant = resp.getheader("x-Amzn-Invoked-Production-Variant")
        assert preds == ([CONSTANT] * 3 if variant == "canary" else EXAMPLE_ANSWER)
        seen[variant] += 1
    conn.close()
    assert abs(seen["primary"] - 750) <= 30 and abs(seen["canary"] - 250) <= 30, seen
    assert t.invoke("split", REQUEST, variant="canary").predictions == [CONSTANT] * 3


def test_cli_python_api_and_boto3_reach_the_same_endpoint(local, state_dir, base_image,
                                                          docker_engine):
    import boto3
    import pandas as pd
    from botocore.config import Config

    import mldeploy

    t = local()
    dep = t.create("clients", str(example_model_dir()))
    conf = ["-C", f"state_dir={state_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([MLDEPLOY, "invoke", "--target", "local", *conf, "--name", "clients",
                          "--data", REQUEST.decode()], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == EXAMPLE_ANSWER
    listed = subprocess.run([MLDEPLOY, "list", "--target", "local", *conf], capture_output=True,
                            text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == "clients" and row["status"] == "ready" and row["url"] == dep.url

    split = json.loads(REQUEST)["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    pred = mldeploy.invoke("local", name="clients", data=frame,
                           config={"state_dir": str(state_dir)})
    assert pred.predictions == EXAMPLE_ANSWER and pred.variant == "primary"

    rt = boto3.client("sagemaker-runtime", endpoint_url=dep.url, region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local",
                      config=Config(retries={"total_max_attempts": 1}))
    got = rt.invoke_endpoint(EndpointName="clients", ContentType="application/json",
                             Body=REQUEST)
    assert json.loads(got["Body"].read()) == {"predictions": EXAMPLE_ANSWER}
    assert got["InvokedProductionVariant"] == "primary"
    assert got["ContentType"] == "application/json"
    with pytest.raises(rt.exceptions.ModelError) as info:
        rt.invoke_endpoint(EndpointName="clients", ContentType="application/json",
                           Body=b'{"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}}')
    assert info.value.response["OriginalStatusCode"] == 400
    assert json.loads(info.value.response["OriginalMessage"])["error_code"]
    with pytest.raises(rt.exceptions.ValidationError):
        rt.invoke_endpoint(EndpointName="nope", ContentType="application/json", Body=REQUEST)


def test_delete_leaves_nothing_running_and_a_restart_reads_as_stopped(local, docker_engine,
                                                                      state_dir):
    t = local()
    dep = t.create("gone", str(example_model_dir()))
    container = docker_engine.containers.get(dep.resources[1].id)
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    assert container.attrs["HostConfig"]["Memory"] == 2 * 1024**3
    assert container.attrs["HostConfig"]["NanoCpus"] == 10**9
    # what a machine restart leaves: a dead gateway process and a stopped container
    os.kill(dep.details["gateway_pid"], signal.SIGKILL)
    container.stop(timeout=0)
    deadline = time.monotonic() + 10
    while gateway_pids(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = t.get("gone")
    assert got.status is Status.OUT_OF_SERVICE and got.details["state"] == "stopped"
    assert "exited" in got.details["containers"][dep.resources[1].id]["state"]
    gone = t.delete("gone")
    assert gone.existed and {r.id for r in gone.removed} == {dep.resources[1].id}
    assert _running(docker_engine, state_dir) == set() and gateway_pids(state_dir) == set()
    assert t.list() == []
