"""The mlserver engine's options: MLServer's parallel inference workers and adaptive batching
(MLDEPLOY_MLSERVER_PARALLEL_WORKERS, MLDEPLOY_MLSERVER_MAX_BATCH_SIZE / _MAX_BATCH_TIME)."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from test_metrics_live import get, scrape, wait_for, worker_pids  # noqa: I001  (sibling module)
from test_serve import _example_frame, serve

from mldeploy.testing.aws import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                       reason="MLServer is not installed (pip install 'mldeploy[mlserver]')"),
]


def _v2(frame) -> dict:
    return {"inputs": [{"name": c, "shape": [len(frame)], "datatype": "FP64",
                        "data": frame[c].tolist()} for c in frame.columns]}


def test_parallel_workers_and_adaptive_batching(tmp_path, example_model):
    frame = _example_frame(example_model)
    port = free_port(3)
    env = {"MLDEPLOY_MLSERVER_PARALLEL_WORKERS": "2", "MLDEPLOY_MLSERVER_MAX_BATCH_SIZE": "8",
           "MLDEPLOY_MLSERVER_MAX_BATCH_TIME": "1.0"}
    with serve(tmp_path, example_model, "--engine", "mlserver", port=port, env=env) as server:
        server.wait_ready(180)
        metrics_url = f"http://127.0.0.1:{port + 2}/metrics"
        # two inference worker processes, each with the model loaded
        wait_for(lambda: get(scrape(metrics_url), "mldeploy_model_ready") == 2, 120)
        assert len(worker_pids(server.proc.pid)) >= 2
        before = get(scrape(metrics_url), "mldeploy_model_predict_seconds_count")
        url = f"{server.url}/v2/models/model/infer"
        rows = [frame.iloc[[i]] for i in range(len(frame))] * 2  # 6 one-row requests at once
        with ThreadPoolExecutor(len(rows)) as pool:
            answers = list(pool.map(lambda f: requests.post(url, json=_v2(f), timeout=60), rows))
        assert [a.status_code for a in answers] == [200] * len(rows), [a.text for a in answers]
        # each caller gets its own row's prediction back out of the batch
        assert [a.json()["outputs"][0]["data"] for a in answers] == [[1], [1], [0]] * 2
        calls = get(scrape(metrics_url), "mldeploy_model_predict_seconds_count") - before
        assert 1 <= calls < len(rows)  # batched: fewer model calls than requests
        ok = server.invoke({"dataframe_split": frame.to_dict(orient="split")})
        assert ok.status_code == 200 and ok.json() == {"predictions": [1, 1, 0]}


def test_mlserver_options_are_validated(tmp_path, example_model):
    with serve(tmp_path, example_model, "--engine", "mlserver", port=free_port(3),
               env={"MLDEPLOY_MLSERVER_MAX_BATCH_SIZE": "4"}) as server:
        assert server.proc.wait(60) == 2
    log = server.log.read_text()
    assert "needs mlserver_max_batch_time" in log and "Traceback" not in log
