"""The local target's orchestration with the real gateway process and state files, and fake
containers (in-process model servers on 127.0.0.1, see test_local_fakes): the conformance suite,
blue/green replace under a steady client, a failed replace, add/traffic, state across processes
and restarts. The same flows on the real Docker engine are in integration/test_local.py."""

from __future__ import annotations

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

import pytest
from test_local_fakes import FakeEngine

from mldeploy.errors import DeploymentFailedError, InvocationError, TargetError, UsageError
from mldeploy.plugins.local import LocalTarget
from mldeploy.plugins.local import _gateway_ctl as gw
from mldeploy.plugins.local.testing import gateway_inventory, gateway_pids
from mldeploy.target import DeployMode, Status
from mldeploy.testing.conformance import TargetConformance, example_model_dir

REQUEST = (example_model_dir() / "serving_input_example.json").read_bytes()


@pytest.fixture
def engine():
    e = FakeEngine()
    yield e
    e.stop_all()


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "state"
    yield d
    for pid in gateway_pids(d):  # a failing test must not leave gateways behind
        os.kill(pid, signal.SIGKILL)


def model(tmp_path: Path, answer: str) -> str:
    """A copy of the example model whose fake image answers ``answer``."""
    dst = tmp_path / answer
    if not dst.exists():
        shutil.copytree(example_model_dir(), dst)
        (dst / "README.txt").write_text(answer)
    return str(dst)


@pytest.fixture
def local(engine, state_dir):
    def make(**config) -> LocalTarget:
        return LocalTarget({"state_dir": str(state_dir), **config}, clients=engine)

    return make


class TestLocalConformance(TargetConformance):
    @pytest.fixture
    def target(self, local):
        return local()

    @pytest.fixture
    def inventory(self, engine, state_dir):
        def now() -> set[str]:
            """Containers, live gateways of state files, and any other gateway process."""
            return set(engine.containers) | gateway_inventory(state_dir)

        return now

    @pytest.fixture
    def fail_next_deploy(self, engine):
        def fail(reason: str) -> None:
            engine.fail_next = reason

        return fail


def answer(target: LocalTarget, name: str = "ep", **kw) -> str:
    return target.invoke(name, REQUEST, **kw).predictions[0]


def test_state_survives_the_process_and_a_new_target_instance_sees_it(local, tmp_path):
    local().create("ep", model(tmp_path, "A"))
    fresh = local()
    assert [d.name for d in fresh.list()] == ["ep"]
    assert answer(fresh) == "A"
    script = ("import json, sys; from mldeploy.plugins.local import LocalTarget;"
              f"t = LocalTarget({{'state_dir': {str(fresh.store.dir)!r}}});"
              "d = t.list()[0]; print(json.dumps([d.name, d.url, d.details['state']]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(out.stdout) == ["ep", fresh.get("ep").url, "running"]


def test_a_dead_gateway_is_reported_stopped_and_replace_starts_it_again(local, tmp_path, engine):
    t = local()
    dep = t.create("ep", model(tmp_path, "A"))
    os.kill(dep.details["gateway_pid"], signal.SIGKILL)  # as a machine restart leaves it
    for name in list(engine.containers):
        engine.crash(name)
    deadline = time.monotonic() + 10
    while gw.is_gateway_process(dep.details["gateway_pid"], "ep") and time.monotonic() < deadline:
        time.sleep(0.05)
    got = t.get("ep")
    assert got.status is Status.OUT_OF_SERVICE and got.details["state"] == "stopped"
    assert "stopped" in got.failure_reason
    assert [d.status for d in t.list()] == [Status.OUT_OF_SERVICE]
    with pytest.raises(TargetError, match="does not answer"):
        t.invoke("ep", REQUEST)
    back = t.replace("ep", model(tmp_path, "B"))
    assert back.status is Status.READY and back.url == dep.url, "same port when it is free"
    assert answer(t) == "B"
    assert list(engine.containers) == [back.resources[1].id]


def test_a_crashed_container_makes_the_endpoint_failed(local, tmp_path, engine):
    t = local()
    dep = t.create("ep", model(tmp_path, "A"))
    engine.crash(dep.resources[1].id)
    got = t.get("ep")
    assert got.status is Status.FAILED and "exit code 137" in got.failure_reason
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", REQUEST)
    assert info.value.status == 502 and info.value.error_code == "UPSTREAM_UNAVAILABLE"


def test_replace_under_a_steady_client_loses_no_request(local, tmp_path, engine):
    t = local()
    t.create("ep", model(tmp_path, "A"))
    seen: list[list[str]] = [[], [], []]  # per client thread, in its own order
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(mine: list[str]) -> None:
        c = local()
        while not stop.is_set():
            try:
                mine.append(answer(c))
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in seen]
    for th in threads:
        th.start()
    try:
        time.sleep(0.3)
        t.replace("ep", model(tmp_path, "B"))
        time.sleep(0.3)
        with pytest.raises(DeploymentFailedError):
            t.replace("ep", model(tmp_path, "broken-C"))
        time.sleep(0.3)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    assert errors == []
    for mine in seen:  # each client: the old model, then the new one, never back
        assert mine[0] == "A" and mine[-1] == "B"
        switch = mine.index("B")
        assert set(mine[:switch]) == {"A"} and set(mine[switch:]) == {"B"}
    assert len(engine.containers) == 1


def test_a_failed_replace_shows_the_log_tail_and_removes_only_the_new_container(
        local, tmp_path, engine):
    t = local()
    before = t.create("ep", model(tmp_path, "A"))
    with pytest.raises(DeploymentFailedError) as info:
        t.replace("ep", model(tmp_path, "broken-B"))
    err = info.value
    assert "did not become healthy" in err.message and "exit code 3" in err.message
    tail = err.message.split("--- last lines of its log ---\n")[1]
    assert tail.splitlines()[:3] == ["serving broken-B",
                                     "RuntimeError: the model cannot load (traceback folded)",
                                     "exiting"], "the log tail, health checks and frames folded"
    saved = Path(err.message.rsplit("its whole log: ", 1)[1].rstrip(")"))
    assert "Traceback" in saved.read_text(), "the whole log is kept"
    assert "Traceback" not in err.message
    assert "keeps serving" in err.hint
    assert len(err.cleaned) == 1 and err.cleaned[0].kind == "container"
    assert err.cleaned[0].id.startswith("mldeploy-local-ep-")
    assert err.leftover == []
    after = t.get("ep")
    assert after.status is Status.READY and after.resources == before.resources
    assert set(engine.containers) == {before.resources[1].id}
    assert answer(t) == "A"


def test_add_and_traffic_split_requests_by_weight(local, tmp_path):
    t = local()
    t.create("ep", model(tmp_path, "A"))
    dep = local(weight=1, variant_name="canary").add("ep", model(tmp_path, "B"))
    assert [(v.name, v.weight) for v in dep.variants] == [("primary", 1.0), ("canary", 1.0)]
    t.traffic("ep", {"primary": 9, "canary": 1})
    counts = Counter(answer(t) for _ in range(1000))
    assert counts == {"A": 900, "B": 100}
    assert answer(t, variant="canary") == "B"
    with pytest.raises(UsageError, match="no variant"):
        t.traffic("ep", {"nope": 1})
    with pytest.raises(UsageError, match="already has"):
        local(variant_name="canary").add("ep", model(tmp_path, "C"))
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", REQUEST, variant="nope")
    assert info.value.status == 400


def test_replace_one_variant_keeps_the_other_and_its_weight(local, tmp_path, engine):
    t = local()
    t.create("ep", model(tmp_path, "A"))
    local(weight=3).add("ep", model(tmp_path, "B"))
    dep = local(variant_name="variant-2").replace("ep", model(tmp_path, "C"))
    assert [(v.name, v.weight) for v in dep.variants] == [("primary", 1.0), ("variant-2", 3.0)]
    assert answer(t, variant="variant-2") == "C" and answer(t, variant="primary") == "A"
    assert len(engine.containers) == 2
    whole = t.replace("ep", model(tmp_path, "D"))
    # all variants become one, named after the one that had the most traffic
    assert [(v.name, v.weight) for v in whole.variants] == [("variant-2", 1.0)]
    assert len(engine.containers) == 1 and answer(t) == "D"


def test_delete_removes_containers_gateway_state_and_orphans(local, tmp_path, engine,
                                                             state_dir):
    t = local()
    dep = t.create("ep", model(tmp_path, "A"))
    orphan = dict(engine.containers[dep.resources[1].id].spec.labels)
    from mldeploy.plugins.local._client import ContainerSpec

    engine.run(ContainerSpec("mldeploy-local-ep-orphan", "img", 1, orphan))
    gone = t.delete("ep")
    assert {r.id for r in gone.removed} == {dep.url, dep.resources[1].id,
                                            "mldeploy-local-ep-orphan"}
    assert engine.containers == {} and gateway_pids(state_dir) == set()
    assert not (state_dir / "ep.json").exists()


def test_delete_also_removes_the_kept_logs_of_failed_starts(local, tmp_path, state_dir):
    t = local()
    t.create("ep", model(tmp_path, "A"))
    with pytest.raises(DeploymentFailedError):
        t.replace("ep", model(tmp_path, "broken-B"))
    assert list((state_dir / "logs" / "ep").glob("*.log"))
    t.delete("ep")
    assert not (state_dir / "logs" / "ep").exists()


def test_plan_names_what_would_change(local, tmp_path, engine):
    t = local()
    plan = t.plan(DeployMode.CREATE, "ep", model(tmp_path, "A"))
    kinds = [(c.action.value, c.resource.kind) for c in plan.changes]
    assert kinds == [("create", "image"), ("create", "container"), ("create", "gateway")]
    dep = t.create("ep", model(tmp_path, "A"))
    plan = t.plan(DeployMode.REPLACE, "ep", model(tmp_path, "A"))
    kinds = [(c.action.value, c.resource.kind, c.resource.id) for c in plan.changes]
    assert kinds[0][:2] == ("keep", "image")
    assert ("delete", "container", dep.resources[1].id) in kinds
    assert engine.builds == 1


def test_image_is_built_once_per_model_content(local, tmp_path, engine):
    t = local()
    t.create("a", model(tmp_path, "A"))
    t.create("b", model(tmp_path, "A"))
    assert engine.builds == 1
    local(rebuild=True).replace("b", model(tmp_path, "A"))
    assert engine.builds == 2


def test_a_missing_given_image_is_a_config_error_and_nothing_is_made(local, tmp_path, engine):
    from mldeploy.errors import ConfigError

    with pytest.raises(ConfigError, match="not on the local Docker engine"):
        local(image="nope:1").create("ep", model(tmp_path, "A"))
    assert engine.containers == {} and local().list() == []


def test_errors_from_the_model_become_invocation_and_prediction_errors(local, tmp_path):
    from mldeploy.errors import PredictionError

    t = local()
    t.create("ep", model(tmp_path, "A"))
    with pytest.raises(PredictionError) as info:
        t.invoke("ep", {"fail": 500})
    assert info.value.status == 500 and info.value.error_code == "MODEL_ERROR"
    assert info.value.request_id
    with pytest.raises(InvocationError) as info:
        t.invoke("ep", {"fail": 400})
    assert not isinstance(info.value, PredictionError) and info.value.status == 400


def test_limits_are_passed_to_containers_and_kept_by_replace(local, tmp_path, engine):
    dep = local(memory="2g", cpus=1).create("ep", model(tmp_path, "A"))
    spec = engine.containers[dep.resources[1].id].spec
    assert (spec.memory, spec.cpus, spec.workers) == (2 * 1024**3, 1.0, 1)
    again = local().replace("ep", model(tmp_path, "B"))
    spec = engine.containers[again.resources[1].id].spec
    assert (spec.memory, spec.cpus) == (2 * 1024**3, 1.0)
    assert again.details["limits"] == {"memory": "2g", "cpus": 1.0, "workers": 1}


def test_log_tail_folds_chained_tracebacks_and_drops_health_checks():
    from mldeploy.plugins.local.errors import log_tail

    text = "\n".join([
        "start", "INFO GET /ping 503 0.1ms", "Traceback (most recent call last):",
        '  File "a.py", line 1, in f', "    g()", "KeyError: 'x'", "",
        "During handling of the above exception, another exception occurred:", "",
        "Traceback (most recent call last):", '  File "b.py", line 2, in h', "    raise X",
        "    ^^^^^^^", "ValueError: bad model", "Traceback (most recent call last):",
        '  File "<frozen runpy>", line 198, in _run_module_as_main', "SystemExit: 3",
        "[ERROR] Worker exited with code 3"])
    assert log_tail(text, 10).splitlines() == [
        "start", "KeyError: 'x' (traceback folded)", "ValueError: bad model (traceback folded)",
        "SystemExit: 3 (traceback folded)", "[ERROR] Worker exited with code 3"]
    assert log_tail(text, 1) == "[ERROR] Worker exited with code 3"
    assert log_tail(text, 0) == ""
