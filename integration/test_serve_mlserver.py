"""The ``mlserver`` engine meets the flask engine's contract, plus MLServer's V2 routes."""

from __future__ import annotations

import importlib.util
import socket

import pytest
import requests
from test_serve import _example_frame, serve  # noqa: I001  (sibling test module)

from mldeploy.testing.aws import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("mlserver") is None,
        reason="MLServer is not installed (pip install 'mldeploy[mlserver]')",
    ),
]


def test_mlserver_engine_serves_the_same_contract(tmp_path, example_model):
    frame = _example_frame(example_model)
    with serve(tmp_path, example_model, "--engine", "mlserver", port=free_port(3)) as server:
        server.wait_ready(90)
        ok = server.invoke({"dataframe_split": frame.to_dict(orient="split")})
        assert ok.status_code == 200 and ok.json() == {"predictions": [1, 1, 0]}
        assert len(ok.headers["X-Request-Id"]) == 32
        bad = server.invoke({"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "missing column(s) 'f1'" in bad.json()["message"]
        assert requests.get(f"{server.url}/version", timeout=5).json()["engine"] == "mlserver"
        v2 = requests.post(
            f"{server.url}/v2/models/model/infer",
            json={"inputs": [{"name": c, "shape": [3], "datatype": "FP64",
                              "data": frame[c].tolist()} for c in frame.columns]},
            timeout=30,
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == [1, 1, 0]
        v2_bad = requests.post(
            f"{server.url}/v2/models/model/infer",
            json={"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": [0.5]}]},
            timeout=30,
        )
        assert v2_bad.status_code == 400 and "missing column(s)" in v2_bad.text


def test_mlserver_engine_ping_is_503_until_loaded(tmp_path, slow_model):
    with serve(tmp_path, slow_model, "--engine", "mlserver", port=free_port(3),
               env={"MLDEPLOY_TEST_LOAD_SLEEP": "3"}) as server:
        seen = [r.status_code for r in server.pings_until_ready(timeout=30)]
        assert 503 in seen and seen[-1] == 200


def test_mlserver_v2_parameters_reach_the_model_as_params(tmp_path, mixed_model):
    rows = {"name": ["a", "b"], "count": [1, 2], "flag": [True, False]}
    types = {"name": "BYTES", "count": "INT64", "flag": "BOOL"}
    inputs = [{"name": k, "shape": [2], "datatype": types[k], "data": v} for k, v in rows.items()]
    with serve(tmp_path, mixed_model, "--engine", "mlserver", port=free_port(3)) as server:
        server.wait_ready(90)
        url = f"{server.url}/v2/models/model/infer"
        scaled = requests.post(url, timeout=30, json={"inputs": inputs,
                                                      "parameters": {"scale": 2.5}})
        plain = requests.post(url, timeout=30, json={"inputs": inputs})
        wrong = requests.post(url, timeout=30, json={"inputs": inputs,
                                                     "parameters": {"scale": "big"}})
    assert scaled.status_code == 200 and plain.status_code == 200, (scaled.text, plain.text)
    assert "2.5" in str(scaled.json()["outputs"]) and "2.5" not in str(plain.json()["outputs"])
    assert wrong.status_code == 400, wrong.text


def test_mlserver_engine_says_which_port_is_taken(tmp_path, example_model):
    port = free_port(3)
    with socket.socket() as squatter:  # someone else holds the gRPC port (--port + 1)
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        with serve(tmp_path, example_model, "--engine", "mlserver", port=port) as server:
            assert server.proc.wait(60) == 2
    log = server.log.read_text()
    assert f"port {port + 1} on 127.0.0.1 is in use" in log and "Traceback" not in log
