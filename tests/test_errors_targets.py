"""The error rules through a real target: the local target (its fake Docker engine, a real
gateway process) - the 504 mapping end to end and the busy-port exit code."""

from __future__ import annotations

import os
import shutil
import signal
import socket

import pytest
from test_local_fakes import FakeEngine

from mldeploy.errors import (
    InvocationError,
    PortInUseError,
    PredictionError,
)
from mldeploy.plugins.local import LocalTarget
from mldeploy.plugins.local.testing import gateway_pids
from mldeploy.testing.conformance import example_model_dir


@pytest.fixture
def target(tmp_path):
    engine = FakeEngine()
    state = tmp_path / "state"

    def make(**config) -> LocalTarget:
        return LocalTarget({"state_dir": str(state), **config}, clients=engine)

    yield make
    engine.stop_all()
    for pid in gateway_pids(state):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def model(tmp_path):
    return str(shutil.copytree(example_model_dir(), tmp_path / "model"))


def test_a_504_request_timeout_is_a_prediction_error_on_local_as_everywhere(target, model):
    t = target()
    t.create("ep", model)
    with pytest.raises(PredictionError) as info:
        t.invoke("ep", {"fail": 504, "code": "REQUEST_TIMEOUT"})
    assert (info.value.status, info.value.error_code) == (504, "REQUEST_TIMEOUT")
    assert info.value.exit_code == 1 and info.value.request_id
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", {"fail": 503, "code": "MODEL_NOT_READY"})
    assert type(info.value) is InvocationError and info.value.exit_code == 1
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", {"fail": 400})
    assert type(info.value) is InvocationError and info.value.exit_code == 2


def test_a_busy_gateway_port_is_port_in_use_exit_2_as_for_serve(target, model):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            target(port=port).create("ep", model)
    # bad input the backend refused, with everything it made removed again (the core's
    # transaction passes such an error through as it is): it exits as bad input does
    assert info.value.exit_code == 2 and "Address already in use" in info.value.message
    assert target().list() == []
