"""`mldeploy serve` as a real process over a real socket on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import requests

from mldeploy.testing.aws import free_port

pytestmark = pytest.mark.integration

MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def ping(self) -> int:
        try:
            return requests.get(f"{self.url}/ping", timeout=2).status_code
        except requests.ConnectionError:
            return 0

    def pings_until_ready(self, timeout: float = 60,
                          headers: dict | None = None) -> list[requests.Response]:
        """Every answer to ``GET /ping`` (refused connections skipped) up to the first 200."""
        seen: list[requests.Response] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(requests.get(f"{self.url}/ping", timeout=2, headers=headers))
            except requests.ConnectionError:
                pass
            if seen and seen[-1].status_code == 200:
                break
            time.sleep(0.05)
        return seen

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping() == 200:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def invoke(self, doc, **kw) -> requests.Response:
        return requests.post(f"{self.url}/invocations", json=doc, timeout=kw.pop("timeout", 30),
                             **kw)


@contextmanager
def serve(tmp_path: Path, model: Path, *args: str, env: dict | None = None, cmd=None,
          port: int | None = None):
    port = port or free_port()
    log = tmp_path / f"serve-{port}.log"
    full_env = {**os.environ, **(env or {})}
    command = cmd or [MLDEPLOY, "serve", "-m", str(model), "--host", "127.0.0.1",
                      "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, port, log)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _example_frame(example_model: Path) -> pd.DataFrame:
    split = json.loads((example_model / "serving_input_example.json").read_text())
    return pd.DataFrame(split["dataframe_split"]["data"],
                        columns=split["dataframe_split"]["columns"])


def test_predictions_equal_in_process_predictions(tmp_path, example_model):
    import mlflow.pyfunc
    import numpy as np

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(500, 20)), columns=[f"f{i}" for i in range(20)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = mlflow.pyfunc.load_model(str(example_model)).predict(frame).tolist()
    with serve(tmp_path, example_model, "--workers", "2") as server:
        server.wait_ready()
        for doc in (
            {"dataframe_split": frame.to_dict(orient="split")},
            {"dataframe_records": frame.to_dict(orient="records")},
            {"inputs": frame.to_dict(orient="list")},
        ):
            response = server.invoke(doc, headers={"X-Amzn-SageMaker-Custom-Attributes": "x"})
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": expected}
            assert response.headers["Content-Type"] == "application/json"
        csv = requests.post(f"{server.url}/invocations", data=frame.to_csv(index=False),
                            headers={"Content-Type": "text/csv"}, timeout=30)
        assert csv.json() == {"predictions": expected}
        version = requests.get(f"{server.url}/version", timeout=5).json()
        assert version["mldeploy"] and version["mlflow"] and version["model"]["flavors"] == [
            "sklearn"
        ]


def test_ping_is_503_until_the_model_is_loaded(tmp_path, slow_model):
    with serve(tmp_path, slow_model, "--workers", "1",
               env={"MLDEPLOY_TEST_LOAD_SLEEP": "3"}) as server:
        seen = [r.status_code for r in server.pings_until_ready()]
        assert 503 in seen, seen
        assert seen[-1] == 200
        assert set(seen) <= {503, 200}
        assert seen.index(200) > seen.index(503)
        not_ready = requests.get(f"{server.url}/health", timeout=2)
        assert not_ready.status_code == 200 and not_ready.content == b""


def test_error_responses_are_json_with_request_id_and_server_keeps_serving(
    tmp_path, example_model
):
    frame = _example_frame(example_model)
    good = {"dataframe_split": frame.to_dict(orient="split")}
    with serve(tmp_path, example_model, "--workers", "1") as server:
        server.wait_ready()
        bad = requests.post(f"{server.url}/invocations", data=b"{oops",
                            headers={"Content-Type": "application/json",
                                     "X-Request-Id": "my-id-1"}, timeout=10)
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "BAD_REQUEST"
        assert bad.json()["request_id"] == "my-id-1" == bad.headers["X-Request-Id"]
        no_type = requests.post(f"{server.url}/invocations", data=b"{}", timeout=10)
        assert no_type.status_code == 415 and "Content-Type" in no_type.json()["message"]
        missing = requests.get(f"{server.url}/nope", timeout=10)
        assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
        wrong_method = requests.get(f"{server.url}/invocations", timeout=10)
        assert wrong_method.status_code == 405
        ok = server.invoke(good)
        assert ok.status_code == 200 and len(ok.headers["X-Request-Id"]) == 32
    log = server.log.read_text()
    assert "POST /invocations 400" in log and "rid=my-id-1" in log


def test_20_mb_body_gets_413_and_server_keeps_serving(tmp_path, example_model):
    frame = _example_frame(example_model)
    with serve(tmp_path, example_model, "--workers", "1") as server:
        server.wait_ready()
        session = requests.Session()
        big = b'{"dataframe_split": {"data": [' + b"[1.0]," * (20 * 1024 * 1024 // 6) + b"]}}"
        response = session.post(f"{server.url}/invocations", data=big,
                                headers={"Content-Type": "application/json"}, timeout=60)
        assert response.status_code == 413
        assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
        assert "limit is 6291456 bytes" in response.json()["message"]
        # chunked upload (no Content-Length) over the limit is refused too
        chunks = (b"x" * 1024 * 1024 for _ in range(8))
        response = session.post(f"{server.url}/invocations", data=chunks,
                                headers={"Content-Type": "application/json"}, timeout=60)
        assert response.status_code == 413
        ok = session.post(f"{server.url}/invocations",
                          json={"dataframe_split": frame.to_dict(orient="split")}, timeout=30)
        assert ok.status_code == 200


def test_model_error_is_500_with_message_and_traceback_only_in_log(tmp_path, mixed_model):
    with serve(tmp_path, mixed_model, "--workers", "1") as server:
        server.wait_ready()
        response = server.invoke({"dataframe_records": [{"name": "boom", "count": 1,
                                                         "flag": True}]})
        assert response.status_code == 500
        body = response.json()
        assert body["error_code"] == "MODEL_ERROR"
        assert body["message"] == "the model raised ValueError: boom is not a valid name"
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert "Traceback" not in response.text
        ok = server.invoke({"dataframe_records": [{"name": "x", "count": 1, "flag": True}]})
        assert ok.json() == {"predictions": [{"label": "x-2", "flag": False, "scale": 1.0}]}
    log = server.log.read_text()
    assert "Traceback" in log and body["request_id"] in log


def test_ping_answers_while_a_long_prediction_runs_and_timeout_gives_504(tmp_path, slow_model):
    with serve(tmp_path, slow_model, "--workers", "1", "--timeout", "2") as server:
        server.wait_ready()
        result = {}

        def long_request():
            result["response"] = server.invoke({"dataframe_records": [{"sleep": 4}]})

        thread = threading.Thread(target=long_request)
        thread.start()
        time.sleep(0.5)
        assert server.ping() == 200
        assert thread.is_alive(), "the ping waited for the prediction"
        thread.join(30)
        response = result["response"]
        assert response.status_code == 504
        assert response.json()["error_code"] == "REQUEST_TIMEOUT"
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in response.json()["message"]
        # The timed-out prediction's thread still runs: its worker is replaced (this model is
        # not preloaded, so the new worker loads it first).
        assert response.headers["Connection"] == "close"
        assert server.pings_until_ready()[-1].status_code == 200
        fast = server.invoke({"dataframe_records": [{"sleep": 0}]})
        assert fast.json() == {"predictions": [1]}
    log = server.log.read_text()
    assert "retiring: a prediction ran over the 2 s timeout" in log
    assert log.count("Booting worker") == 2


def test_sigterm_drains_an_in_flight_request(tmp_path, slow_model):
    with serve(tmp_path, slow_model, "--workers", "1") as server:
        server.wait_ready()
        result = {}

        def long_request():
            result["response"] = server.invoke({"dataframe_records": [{"sleep": 3}]})

        thread = threading.Thread(target=long_request)
        thread.start()
        time.sleep(1.0)
        server.proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result["response"].status_code == 200
        assert result["response"].json() == {"predictions": [1]}
        assert server.proc.wait(30) == 0
        assert server.ping() == 0  # no longer listening


def test_preload_loads_once_before_forking_while_a_child_answers_503(tmp_path, slow_model):
    env = {"MLDEPLOY_TEST_LOAD_SLEEP": "2", "MLDEPLOY_PRELOAD": "on"}
    with serve(tmp_path, slow_model, "--workers", "2", env=env) as server:
        answers = server.pings_until_ready(headers={"X-Request-Id": "probe-1"})
        seen = [r.status_code for r in answers]
        assert seen[-1] == 200 and 503 in seen, seen
        not_ready = answers[seen.index(503)]
        assert not_ready.json()["error_code"] == "MODEL_NOT_READY"
        assert not_ready.json()["request_id"] == "probe-1"
        assert not_ready.headers["X-Request-Id"] == "probe-1"
        assert server.invoke({"dataframe_records": [{"x": 1}, {"x": 2}]}).ok
    log = server.log.read_text()
    # loaded once in the master (load_context slept once), warmed up in each forked worker
    assert log.count("loaded in") == 1, log
    assert log.count("ready (loaded before fork)") == 2, log


def test_sigterm_while_preloading_stops_at_once_and_frees_the_port(tmp_path, slow_model):
    env = {"MLDEPLOY_TEST_LOAD_SLEEP": "60", "MLDEPLOY_PRELOAD": "on"}
    with serve(tmp_path, slow_model, "--workers", "1", env=env) as server:
        deadline = time.monotonic() + 60
        while server.ping() != 503:
            assert time.monotonic() < deadline and server.proc.poll() is None
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        assert server.ping() == 0  # neither the server nor its 503 responder listens any more


def test_a_model_that_fails_to_preload_stops_the_server_with_code_3(tmp_path, slow_model):
    env = {"MLDEPLOY_TEST_LOAD_SLEEP": "not-a-number", "MLDEPLOY_PRELOAD": "on"}
    with serve(tmp_path, slow_model, "--workers", "2", env=env) as server:
        assert server.proc.wait(60) == 3
        assert server.ping() == 0
    log = server.log.read_text()
    assert "failed to load" in log and "not-a-number" in log
    assert "Booting worker" not in log


def test_model_that_fails_warm_up_stops_the_server(tmp_path, broken_example_model):
    with serve(tmp_path, broken_example_model, "--workers", "1") as server:
        code = server.proc.wait(60)
        assert code != 0
    log = server.log.read_text()
    assert "failed to load" in log and "missing column(s)" in log


def test_container_entry_point_reads_sagemaker_environment(tmp_path, example_model):
    port = free_port()
    env = {
        "MLDEPLOY_MODEL_URI": str(example_model),
        "MLDEPLOY_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }
    cmd = [sys.executable, "-m", "mldeploy.container", "serve"]
    with serve(tmp_path, example_model, cmd=cmd, env=env, port=port) as server:
        server.wait_ready()
        frame = _example_frame(example_model)
        assert server.invoke({"dataframe_split": frame.to_dict(orient="split")}).ok
    assert "Booting worker" in server.log.read_text()
    assert server.log.read_text().count("Booting worker") == 1


def test_cli_rejects_bad_settings_with_exit_code_2(tmp_path, example_model):
    result = subprocess.run([MLDEPLOY, "serve", "-m", str(example_model), "--workers", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: workers must be at least 1, got 0"
    result = subprocess.run([MLDEPLOY, "serve", "-m", str(tmp_path / "nothing")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_sigterm_does_not_wait_for_idle_keep_alive_connections(tmp_path, example_model):
    frame = _example_frame(example_model)
    with serve(tmp_path, example_model, "--workers", "1") as server:
        server.wait_ready()
        session = requests.Session()  # keeps its connection open after the request
        assert session.post(f"{server.url}/invocations", timeout=30,
                            json={"dataframe_split": frame.to_dict(orient="split")}).ok
        server.proc.send_signal(signal.SIGTERM)
        # the graceful timeout is 25 s; an idle client must not hold the shutdown for it
        assert server.proc.wait(12) == 0


def test_a_taken_port_is_one_error_line_and_exit_code_2(tmp_path, example_model):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with serve(tmp_path, example_model, port=port) as server:
            assert server.proc.wait(30) == 2
    log = server.log.read_text()
    assert f"port {port} on 127.0.0.1 is in use by another process" in log
    assert "Traceback" not in log and "gunicorn" not in log  # failed before starting it
