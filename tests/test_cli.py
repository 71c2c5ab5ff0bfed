"""The CLI's one error bridge and the server settings it builds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from mldeploy.container.settings import ServerSettings, SettingsError

MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLDEPLOY, *args], capture_output=True, text=True, timeout=120)


def test_bad_model_uri_is_one_line_and_exit_code_2(tmp_path):
    result = _cli("serve", "-m", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_directory_without_mlmodel_is_exit_code_2(tmp_path):
    result = _cli("serve", "-m", str(tmp_path))
    assert result.returncode == 2
    assert "MLmodel" in result.stderr


def test_click_usage_errors_are_exit_code_2():
    result = _cli("serve", "--port", "notaport")
    assert result.returncode == 2 and "notaport" in result.stderr


def test_version_and_help():
    assert _cli("--version").stdout.startswith("mldeploy, version ")
    help_text = _cli("--help").stdout
    assert "serve" in help_text


# --- serving a remote model: its download is removed when the server exits -----------------


@pytest.fixture
def tracking_run(tmp_path, monkeypatch, example_model, broken_example_model):
    """A file tracking store in tmp_path with one run: the example model logged at 'model' and
    one that fails its warm-up at 'broken'. ``env`` points a server at the store and at an empty
    TMPDIR (``tmp``), where its download lands."""
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true",
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    with monkeypatch.context() as m:
        m.setenv("MLFLOW_TRACKING_URI", uri)
        m.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("serve")).info.run_id
        client.log_artifacts(run_id, str(example_model), "model")
        client.log_artifacts(run_id, str(broken_example_model), "broken")
    return SimpleNamespace(run_id=run_id, env={**os.environ, **env}, tmp=tmp_path / "tmp")


SERVE_COMMANDS = {
    "mldeploy serve": [MLDEPLOY, "serve", "-m"],
    "python -m mldeploy.container serve": [sys.executable, "-m", "mldeploy.container", "serve",
                                           "-m"],
}


def _start(command: str, model_uri: str, env: dict, log: Path) -> SimpleNamespace:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [*SERVE_COMMANDS[command], model_uri, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return SimpleNamespace(proc=proc, url=f"http://127.0.0.1:{port}", log=log)


def _ping(server: SimpleNamespace) -> int:
    try:
        with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as response:
            return response.status
    except OSError:
        return 0


def _workers(server: SimpleNamespace) -> set[int]:
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in children.read_text().split()} if children.exists() else set()


def _wait(server: SimpleNamespace, ready, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"server not ready: {server.log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(server: SimpleNamespace) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@pytest.mark.parametrize("command", SERVE_COMMANDS)
def test_serving_a_run_removes_its_download_on_sigterm_not_when_a_worker_exits(
        tracking_run, tmp_path, command):
    server = _start(command, f"runs:/{tracking_run.run_id}/model", tracking_run.env,
                    tmp_path / "serve.log")
    try:
        _wait(server, lambda: _ping(server) == 200)
        (download,) = tracking_run.tmp.glob("mldeploy-model-*")
        assert (download / "model" / "MLmodel").is_file()
        # A worker that exits (gunicorn restarts it) leaves the download to the next worker.
        (worker,) = _workers(server)
        os.kill(worker, signal.SIGTERM)
        _wait(server, lambda: _workers(server) - {worker} and _ping(server) == 200)
        assert (download / "model" / "MLmodel").is_file()
    finally:
        code = _stop(server)
    assert code == 0, server.log.read_text()[-3000:]
    assert not download.exists()
    assert list(tracking_run.tmp.glob("mldeploy-model-*")) == []


def test_a_model_that_fails_to_load_has_its_download_removed(tracking_run, tmp_path):
    server = _start("mldeploy serve", f"runs:/{tracking_run.run_id}/broken", tracking_run.env,
                    tmp_path / "serve.log")
    try:
        code = server.proc.wait(90)
    finally:
        _stop(server)
    log = server.log.read_text()
    assert code != 0 and "mldeploy-model-" in log, log[-3000:]  # it was downloaded, then failed
    assert list(tracking_run.tmp.glob("mldeploy-model-*")) == []


def test_serving_a_local_model_leaves_it_in_place(tmp_path, example_model):
    import shutil

    model = Path(shutil.copytree(example_model, tmp_path / "model"))
    before = sorted(p.name for p in model.iterdir())
    server = _start("mldeploy serve", str(model), dict(os.environ), tmp_path / "serve.log")
    try:
        _wait(server, lambda: _ping(server) == 200)
    finally:
        assert _stop(server) == 0, server.log.read_text()[-3000:]
    assert sorted(p.name for p in model.iterdir()) == before


def test_settings_precedence_flag_then_environment_then_default():
    env = {"SAGEMAKER_BIND_TO_PORT": "9001", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
           "SAGEMAKER_MODEL_SERVER_TIMEOUT": "12.5", "MLDEPLOY_MAX_REQUEST_BYTES": "100"}
    s = ServerSettings.resolve(env, port=None, workers=5)
    assert (s.port, s.workers, s.timeout, s.max_request_bytes) == (9001, 5, 12.5, 100)
    default = ServerSettings.resolve({})
    assert default.port == 8080 and default.timeout == 60 and default.workers >= 1
    assert default.max_request_bytes == 6 * 1024 * 1024


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"SAGEMAKER_BIND_TO_PORT": "http"},
         "port from environment variable SAGEMAKER_BIND_TO_PORT"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "port must be 1-65535"),
        ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "0"}, "timeout must be positive"),
        ({"MLDEPLOY_ENGINE": "uvicorn"}, "engine must be one of flask, mlserver"),
    ],
)
def test_bad_settings_name_the_source(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        ServerSettings.resolve(env)


def test_unknown_setting_is_an_error():
    with pytest.raises(SettingsError, match="unknown setting"):
        ServerSettings.resolve({}, bogus=1)


def test_kubernetes_dry_run_prints_valid_manifests_without_a_cluster(tmp_path, example_model):
    import os

    import kubernetes_validate
    import yaml

    result = subprocess.run(
        [MLDEPLOY, "deploy", "-t", "kubernetes:/ctx/ml", "-n", "demo", "-m", str(example_model),
         "-C", "image=registry.example/demo:1", "--dry-run", "-o", "yaml"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert sorted(d["kind"] for d in docs) == [
        "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "ml"
        kubernetes_validate.validate(doc, "1.33", strict=True)
    # replace needs the cluster's state: without a kubeconfig it is a usage error (exit 2)
    replace = subprocess.run(
        [MLDEPLOY, "deploy", "-t", "kubernetes", "-n", "demo", "-m", str(example_model),
         "-C", "image=registry.example/demo:1", "--mode", "replace", "--dry-run"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert replace.returncode == 2 and "kubeconfig" in replace.stderr
