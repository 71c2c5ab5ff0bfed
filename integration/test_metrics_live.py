"""/metrics of a real `mldeploy serve` with several gunicorn workers: the numbers add up over
workers, survive a worker's death, and move to another port when asked."""

from __future__ import annotations

import importlib.util
import os
import signal
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from test_serve import serve  # noqa: I001  (sibling test module)

from mldeploy.testing.aws import free_port

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers: children of the master (the mldeploy process itself)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:
                        children.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return children


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_counts_add_up_over_workers_and_survive_a_dead_worker(tmp_path, example_model):
    body = (example_model / "serving_input_example.json").read_bytes()
    with serve(tmp_path, example_model, "--workers", "3", "--threads", "2") as server:
        server.wait_ready(120)
        metrics_url = f"{server.url}/metrics"
        wait_for(lambda: get(scrape(metrics_url), "mldeploy_model_ready") == 3)
        n = 30
        for _ in range(n):  # a new connection each: gunicorn spreads them over the workers
            ok = requests.post(f"{server.url}/invocations", data=body, timeout=30,
                               headers={"Content-Type": "application/json",
                                        "Connection": "close"})
            assert ok.status_code == 200
        bad = requests.post(f"{server.url}/invocations", data=b"{", timeout=30,
                            headers={"Content-Type": "application/json"})
        assert bad.status_code == 400
        found = scrape(metrics_url)
        assert get(found, "mldeploy_requests_total", route="/invocations", status="200") == n
        assert get(found, "mldeploy_requests_total", route="/invocations", status="400") == 1
        assert get(found, "mldeploy_model_predict_seconds_count") == n
        assert get(found, "mldeploy_request_duration_seconds_count", route="/invocations") == n + 1
        assert get(found, "mldeploy_request_size_bytes_sum", route="/invocations") == \
            n * len(body) + 1
        assert get(found, "mldeploy_model_load_seconds") > 0
        # scrapes are served by whichever worker takes the connection: all give the same sums
        assert all(
            get(scrape(metrics_url), "mldeploy_requests_total", route="/invocations",
                status="200") == n for _ in range(5)
        )
        workers = worker_pids(server.proc.pid)
        assert len(workers) == 3, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(set(worker_pids(server.proc.pid)) - set(workers)) == 1)
        found = wait_for(lambda: (f := scrape(metrics_url))
                         and get(f, "mldeploy_model_ready") == 3 and f)
        # the dead worker's requests still count; its live gauges are gone (ready is 3, not 4)
        assert get(found, "mldeploy_requests_total", route="/invocations", status="200") == n
        assert get(found, "mldeploy_requests_in_flight") == 0  # /metrics itself is not counted
    directories = [w for w in server.log.read_text().split() if "/mldeploy-metrics-" in w]
    assert len(directories) == 1 and not os.path.exists(directories[0])  # removed at exit


def test_metrics_on_another_port_or_off(tmp_path, example_model):
    port, metrics_port = free_port(), free_port()
    with serve(tmp_path, example_model, "--workers", "2", port=port,
               env={"MLDEPLOY_METRICS_PORT": str(metrics_port)}) as server:
        server.wait_ready(120)
        body = (example_model / "serving_input_example.json").read_bytes()
        requests.post(f"{server.url}/invocations", data=body, timeout=30,
                      headers={"Content-Type": "application/json"})
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404
        found = wait_for(lambda: (f := scrape(f"http://127.0.0.1:{metrics_port}/metrics"))
                         and get(f, "mldeploy_model_ready") == 2 and f)
        assert get(found, "mldeploy_requests_total", route="/invocations", status="200") == 1
    with serve(tmp_path, example_model, "--workers", "1",
               env={"MLDEPLOY_METRICS": "off"}) as server:
        server.wait_ready(120)
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404


@pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                    reason="MLServer is not installed (pip install 'mldeploy[mlserver]')")
def test_mlserver_engine_serves_the_same_metrics_on_both_ports(tmp_path, example_model):
    port = free_port(3)
    body = (example_model / "serving_input_example.json").read_bytes()
    with serve(tmp_path, example_model, "--engine", "mlserver", port=port) as server:
        server.wait_ready(120)
        for _ in range(3):
            assert requests.post(f"{server.url}/invocations", data=body, timeout=30,
                                 headers={"Content-Type": "application/json"}).status_code == 200
        ours = wait_for(lambda: (f := scrape(f"{server.url}/metrics"))
                        and get(f, "mldeploy_model_ready") == 1 and f)
        theirs = scrape(f"http://127.0.0.1:{port + 2}/metrics")
        for found in (ours, theirs):
            assert get(found, "mldeploy_requests_total", route="/invocations", status="200") == 3
            assert get(found, "mldeploy_model_predict_seconds_count") == 3
            assert any(k[0] == "mldeploy_info" and dict(k[1])["engine"] == "mlserver"
                       for k in found)
        assert any(k[0].startswith("rest_server_requests") for k in theirs)


@pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                    reason="MLServer is not installed (pip install 'mldeploy[mlserver]')")
def test_mlserver_engine_metrics_off(tmp_path, example_model):
    port = free_port(3)
    with serve(tmp_path, example_model, "--engine", "mlserver", port=port,
               env={"MLDEPLOY_METRICS": "off"}) as server:
        server.wait_ready(120)
        off = requests.get(f"{server.url}/metrics", timeout=10)
        assert off.status_code == 404 and off.json()["error_code"] == "NOT_FOUND"
        with pytest.raises(requests.ConnectionError):  # MLServer's metrics server is off too
            requests.get(f"http://127.0.0.1:{port + 2}/metrics", timeout=10)
