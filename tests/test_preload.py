"""Loading the model before forking workers: the setting, the fork-safety check and the 503
responder child (real sockets, real fork)."""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest
import requests

from mldeploy.container.engines._loading import LoadingResponder
from mldeploy.container.engines.flask import should_preload
from mldeploy.container.loader import fork_safe
from mldeploy.container.settings import ServerSettings, SettingsError


@pytest.mark.parametrize("raw, mode", [("auto", "auto"), ("ON", "on"), ("1", "on"),
                                       ("false", "off"), ("off", "off")])
def test_preload_setting_reads_the_environment(raw, mode):
    assert ServerSettings.resolve({"MLDEPLOY_PRELOAD": raw}).preload == mode


def test_preload_setting_rejects_other_values():
    with pytest.raises(SettingsError, match="preload must be one of auto, on, off, got 'maybe'"):
        ServerSettings.resolve({"MLDEPLOY_PRELOAD": "maybe"})


def test_fork_safe_follows_the_model_flavors(example_model, slow_model, tmp_path):
    assert fork_safe(example_model)  # sklearn
    assert not fork_safe(slow_model)  # a custom python_function model: unknown load_context
    assert not fork_safe(tmp_path)  # no MLmodel
    torch_like = tmp_path / "torch"
    shutil.copytree(example_model, torch_like)
    mlmodel = torch_like / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("sklearn:", "pytorch:"))
    assert not fork_safe(torch_like)


def test_should_preload_auto_on_off(example_model, slow_model):
    def settings(model, mode):
        return ServerSettings.resolve({}, model_uri=str(model), preload=mode)

    assert should_preload(settings(example_model, "auto"))
    assert not should_preload(settings(slow_model, "auto"))
    assert should_preload(settings(slow_model, "on"))
    assert not should_preload(settings(example_model, "off"))


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)  # as gunicorn leaves its listeners
    yield sock
    sock.close()


def test_responder_answers_503_json_until_stopped_then_leaves_the_listener(listener):
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with LoadingResponder([listener]) as responder:
        ping = requests.get(f"{url}/ping", headers={"X-Request-Id": "abc-1"}, timeout=5)
        assert ping.status_code == 503
        assert ping.json() == {"error_code": "MODEL_NOT_READY", "request_id": "abc-1",
                               "message": ping.json()["message"]}
        assert "loading" in ping.json()["message"]
        assert ping.headers["X-Request-Id"] == "abc-1" and ping.headers["Retry-After"] == "1"
        # a POST with a body gets its answer too (the body is drained, not reset)
        post = requests.post(f"{url}/invocations", data=b"x" * 300_000, timeout=5,
                             headers={"Content-Type": "application/json",
                                      "X-Request-Id": "bad id with spaces"})
        assert post.status_code == 503 and len(post.json()["request_id"]) == 32
        head = requests.head(f"{url}/ping", timeout=5)
        assert head.status_code == 503 and head.content == b""
        child = responder._pid
    assert child is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped: no zombie left behind
    # after stop the listener is the parent's alone: a new connection waits in its queue
    client = socket.create_connection(listener.getsockname(), timeout=5)
    deadline = time.monotonic() + 5
    while True:
        try:
            conn, _ = listener.accept()
            break
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    conn.close()
    client.close()


def test_responder_stop_is_prompt_and_idempotent(listener):
    responder = LoadingResponder([listener]).start()
    started = time.monotonic()
    responder.stop()
    responder.stop()
    assert time.monotonic() - started < 2
