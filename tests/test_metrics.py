"""Prometheus metrics (mldeploy.container.metrics): what /metrics reports after real requests to
the flask app in-process, the multiprocess mode's sums over processes, the settings."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mldeploy.container import metrics
from mldeploy.container.settings import ServerSettings, SettingsError


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def app(example_model: Path):
    from mldeploy.container.engines.flask import create_app

    settings = ServerSettings.resolve(env={}, model_uri=str(example_model), workers=1)
    flask_app = create_app(settings)
    runtime = flask_app.config["MLDEPLOY_RUNTIME"]
    assert runtime.ready.wait(120), runtime.failure
    deadline = time.monotonic() + 10
    while b"mldeploy_model_ready 1.0" not in flask_app.test_client().get("/metrics").data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return flask_app


def test_requests_latency_sizes_and_model_facts_are_reported(app, example_model):
    client = app.test_client()
    before = samples(client.get("/metrics").text)
    body = (example_model / "serving_input_example.json").read_bytes()
    bad = b'{"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}}'
    answers = [client.post("/invocations", data=body, content_type="application/json",
                           buffered=True) for _ in range(3)]
    answers.append(client.post("/invocations", data=bad, content_type="application/json",
                               buffered=True))
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert client.get("/nope", buffered=True).status_code == 404
    after = samples(client.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mldeploy_requests_total", route="/invocations", status="200") == 3
    assert delta("mldeploy_requests_total", route="/invocations", status="400") == 1
    assert delta("mldeploy_requests_total", route="other", status="404") == 1
    assert delta("mldeploy_request_duration_seconds_count", route="/invocations") == 4
    # the bad request never reached the model: 3 predict calls, each shorter than its request
    assert delta("mldeploy_model_predict_seconds_count") == 3
    assert 0 < delta("mldeploy_model_predict_seconds_sum") < delta(
        "mldeploy_request_duration_seconds_sum", route="/invocations")
    assert delta("mldeploy_request_size_bytes_sum", route="/invocations") == 3 * len(body) + len(
        bad)
    assert delta("mldeploy_response_size_bytes_sum", route="/invocations") == sum(
        len(a.data) for a in answers)
    assert value(after, "mldeploy_requests_in_flight") == 0
    assert value(after, "mldeploy_model_ready") == 1
    assert value(after, "mldeploy_model_load_seconds") > 0
    info = [k for k in after if k[0] == "mldeploy_model_info"]
    assert len(info) == 1 and dict(info[0][1])["flavors"] == "sklearn"
    assert dict(info[0][1])["flavor_versions"].startswith("sklearn=")
    assert any(k[0] == "mldeploy_info" and dict(k[1])["engine"] == "flask" for k in after)


def test_metrics_answers_openmetrics_and_refuses_post(app):
    client = app.test_client()
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.content_type.startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    post = client.post("/metrics")
    assert post.status_code == 405 and post.json["error_code"] == "METHOD_NOT_ALLOWED"


def test_metrics_off_means_no_route(example_model):
    from mldeploy.container.engines.flask import create_app

    settings = ServerSettings.resolve(env={"MLDEPLOY_METRICS": "off"},
                                      model_uri=str(example_model), workers=1)

    class NeverReady:
        ready = __import__("threading").Event()

    flask_app = create_app(settings, runtime=NeverReady())  # type: ignore[arg-type]
    assert flask_app.test_client().get("/metrics").status_code == 404


def test_predict_timing_is_not_doubled_when_instrumented_twice():
    seen: list[float] = []

    class Pyfunc:
        def predict(self, data, params=None):
            return data

    class Model:
        direct_predict = None
        pyfunc = Pyfunc()

    model = Model()
    metrics.instrument_model(model, seen.append)
    metrics.instrument_model(model, seen.append)
    assert model.pyfunc.predict([1]) == [1]
    assert len(seen) == 1


def _child(directory: str, n: int) -> None:
    os.environ[metrics.MULTIPROC_ENV] = directory
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    m = metrics.ServerMetrics("flask")
    m.in_flight.inc()  # a request in flight when the worker dies: must not count once dead
    for _ in range(n):
        m.observe("/invocations", 200, 0.01, 100, 20)


def test_multiprocess_mode_sums_workers_and_forgets_dead_workers_live_gauges(tmp_path):
    settings = ServerSettings.resolve(env={}, workers=2)
    with metrics.multiprocess_server(settings) as hooks:
        directory = os.environ[metrics.MULTIPROC_ENV]
        assert Path(directory).parent == Path("/tmp") and Path(directory).is_dir()
        ctx = multiprocessing.get_context("fork")
        pids = []
        for n in (2, 3):
            proc = ctx.Process(target=_child, args=(directory, n))
            proc.start()
            proc.join(60)
            assert proc.exitcode == 0
            pids.append(proc.pid)
        found = samples(metrics.ServerMetrics("flask").render()[0].decode())
        assert value(found, "mldeploy_requests_total", route="/invocations", status="200") == 5
        assert value(found, "mldeploy_requests_in_flight") == 2
        for pid in pids:  # gunicorn calls child_exit in the master for each dead worker
            hooks["child_exit"](None, type("W", (), {"pid": pid})())
        found = samples(metrics.ServerMetrics("flask").render()[0].decode())
        assert value(found, "mldeploy_requests_total", route="/invocations", status="200") == 5
        assert value(found, "mldeploy_requests_in_flight") == 0
    assert not Path(directory).exists()
    assert metrics.MULTIPROC_ENV not in os.environ


@pytest.mark.parametrize(("env", "message"), [
    ({"MLDEPLOY_METRICS": "maybe"}, "metrics must be one of on, off"),
    ({"MLDEPLOY_METRICS_PORT": "70000"}, "metrics_port must be 0-65535"),
    ({"MLDEPLOY_ENV_MANAGER": "conda"}, "env_manager must be one of local, virtualenv, uv"),
    ({"MLDEPLOY_MLSERVER_MAX_BATCH_SIZE": "8"}, "needs mlserver_max_batch_time"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        ServerSettings.resolve(env=env)


def test_metrics_settings():
    assert ServerSettings.resolve(env={}).metrics_listener is None
    assert ServerSettings.resolve(env={"MLDEPLOY_METRICS": "false"}).metrics == "off"
    moved = ServerSettings.resolve(env={"MLDEPLOY_METRICS_PORT": "9100"})
    assert moved.metrics_listener == 9100
    assert ServerSettings.resolve(env={"MLDEPLOY_METRICS_PORT": "8080"}).metrics_listener is None


def test_kubernetes_pods_carry_the_prometheus_scrape_annotations():
    pytest.importorskip("kubernetes")
    from mldeploy.config import build_config
    from mldeploy.plugins.kubernetes import manifests as m
    from mldeploy.plugins.kubernetes.config import KubernetesConfig

    cfg = build_config(KubernetesConfig, {})
    model = m.Model("models:/churn/3", "3", "ghcr.io/acme/churn:3f2a9c")
    deployment = m.deployment(cfg, "churn", "ml", model, variant=m.STABLE, replicas=1)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == metrics.METRICS_PATH


def test_names_follow_prometheus_conventions_and_the_readme_lists_every_one(app):
    """Prometheus' naming rules (as KServe, MLServer and BentoML follow them, see the monitoring
    notes): one ``mldeploy_`` prefix, counters end in ``_total``, histograms measure base units
    (``_seconds``, ``_bytes``), snake_case labels, HELP on every family; and the README's Metrics
    table names exactly the families /metrics exposes."""
    import re

    text = app.test_client().get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)  # not prometheus_client's
                if f.name.startswith("mldeploy_") and not f.name.endswith("_created")}  # companions
    assert families
    for name, family in families.items():
        assert re.fullmatch(r"mldeploy_[a-z0-9_]+", name) and family.documentation, name
        if family.type == "counter":
            assert all(s.name.endswith("_total") or s.name.endswith("_created")
                       for s in family.samples), name
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name
        if name.endswith(("_seconds", "_bytes")):
            assert family.type in ("histogram", "gauge"), name
        for sample in family.samples:
            assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in sample.labels), name
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Metrics"):]
    section = section[:section.index("\n## ")]
    listed = set(re.findall(r"`(mldeploy_[a-z_]+)`", section))
    exposed = {f"{n}_total" if f.type == "counter" else n for n, f in families.items()}
    assert listed == exposed
