"""MLflow's own ``mlflow deployments`` command, run as a user runs it (a shell process), against
mldeploy's plugins: ``run-local`` serving the example model on 127.0.0.1, and the local target on
the real Docker engine (create, predict, update, get, list, delete)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mldeploy.plugins.local.testing import gateway_pids
from mldeploy.testing.aws import free_port, wait_http_ok
from mldeploy.testing.conformance import example_model_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
MODEL = str(example_model_dir())
ROWS = json.loads((example_model_dir() / "serving_input_example.json").read_text())


def mlflow(*args: str, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    return subprocess.run([MLFLOW, "deployments", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, check=False)


def test_run_local_serves_the_model_with_mldeploy_serve():
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [MLFLOW, "deployments", "run-local", "-t", "mldeploy-local", "--name", "x", "-m", MODEL,
         "-C", f"port={port}", "-C", "workers=1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_http_ok(f"http://127.0.0.1:{port}/ping", proc, timeout=120), (
            proc.stdout.read().decode(errors="replace")[-2000:] if proc.poll() is not None
            else "run-local never answered /ping")
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(ROWS).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["predictions"] == [1, 1, 0]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def test_mlflow_cli_drives_the_local_target(state_dir: Path, base_image: str, tmp_path: Path):
    # predict/get/list/delete take no -C: the state directory comes from the environment, as it
    # would for a user who sets it once
    env = {"MLDEPLOY_LOCAL_STATE_DIR": str(state_dir)}
    conf = ["-C", f"base_image={base_image}", "-C", "cpus=1", "-C", "memory=2g"]
    r = mlflow("create", "-t", "mldeploy-local", "--name", "churn", "-m", MODEL, *conf, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "python_function deployment churn is created" in r.stdout

    inp = tmp_path / "in.json"
    inp.write_text(json.dumps([dict(zip(ROWS["dataframe_split"]["columns"], row, strict=True))
                               for row in ROWS["dataframe_split"]["data"]]))
    r = mlflow("predict", "-t", "mldeploy-local", "--name", "churn", "--input-path", str(inp),
               env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["predictions"] == [1, 1, 0]

    r = mlflow("update", "-t", "mldeploy-local", "--name", "churn", *conf, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Deployment churn is updated (with flavor python_function)" in r.stdout

    for verb in (["get", "--name", "churn"], ["list"]):
        r = mlflow(*verb, "-t", "mldeploy-local", env=env)
        assert r.returncode == 0 and "churn" in r.stdout, r.stderr[-2000:]

    for _ in range(2):  # idempotent
        r = mlflow("delete", "-t", "mldeploy-local", "--name", "churn", env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    r = mlflow("list", "-t", "mldeploy-local", env=env)
    assert r.returncode == 0 and "churn" not in r.stdout
    assert gateway_pids(state_dir) == set()
