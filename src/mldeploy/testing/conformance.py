"""The conformance suite every target passes. Subclass it in a test module and provide fixtures::

    from mldeploy.testing.conformance import TargetConformance

    class TestMyTarget(TargetConformance):
        @pytest.fixture
        def target(self):                  # a fresh target on a fresh (emulated) backend
            return MyTarget(config, clients=...)

        @pytest.fixture
        def inventory(self):               # optional: every resource id the backend holds now
            return lambda: {...}

        @pytest.fixture
        def fail_next_deploy(self):        # optional: make the next create/replace fail
            return lambda reason: ...

Fixtures with defaults: ``model_uri`` (the shipped example model, ``classifier``),
``other_model_uri`` (the shipped ``classifier_v2``, trained on the opposite labels: every answer
differs, so "the new model serves" is asserted, not assumed), ``request_body`` (the example's
scoring request), ``deployment_name``. Checks that need an optional fixture skip, saying which,
when it is None. What a target can do beyond the basic verbs is read from its declared
``capabilities`` (data, never sniffed from messages): a capability it declares is exercised, one
it does not declare must be refused by the core before the backend is touched.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mldeploy.errors import (
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentNotFoundError,
    UsageError,
)
from mldeploy.target import (
    Action,
    Capability,
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    ProgressEvent,
    Status,
    Target,
)


def example_model_dir(name: str = "classifier") -> Path:
    """A shipped example model: ``classifier`` or ``classifier_v2`` (opposite answers)."""
    return Path(__file__).resolve().parent.parent / "examples" / name


class TargetConformance:
    """Checks of the :class:`~mldeploy.target.Target` contract. See the module docstring."""

    # -- fixtures a subclass provides or overrides -----------------------------------------------

    @pytest.fixture
    def target(self) -> Target:
        raise NotImplementedError("a conformance test class must define a `target` fixture")

    @pytest.fixture
    def inventory(self) -> Callable[[], set[str]] | None:
        return None

    @pytest.fixture
    def fail_next_deploy(self) -> Callable[[str], None] | None:
        return None

    @pytest.fixture
    def deployment_name(self) -> str:
        return "conformance-ep"

    @pytest.fixture
    def model_uri(self) -> str:
        return str(example_model_dir())

    @pytest.fixture
    def other_model_uri(self) -> str:
        return str(example_model_dir("classifier_v2"))

    @pytest.fixture
    def remote_model(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
        """``classifier_v2`` logged to a file tracking store in ``tmp_path``: ``uri`` is its
        ``runs:/`` URI (downloaded on use), ``downloads()`` lists what is left in the TMPDIR
        the download goes to."""
        import tempfile
        import types

        pytest.importorskip("mlflow")
        from mlflow import MlflowClient

        store, tmp = (tmp_path / "mlruns").as_uri(), tmp_path / "tmp"
        tmp.mkdir()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        client = MlflowClient(store)
        run_id = client.create_run(client.create_experiment("conformance")).info.run_id
        client.log_artifacts(run_id, str(example_model_dir("classifier_v2")), "model")
        return types.SimpleNamespace(uri=f"runs:/{run_id}/model",
                                     downloads=lambda: sorted(p.name for p in tmp.iterdir()))

    @pytest.fixture
    def request_body(self) -> bytes:
        return (example_model_dir() / "serving_input_example.json").read_bytes()

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _need(value: Any, fixture: str) -> Any:
        if value is None:
            pytest.skip(f"the target's test class provides no `{fixture}` fixture")
        return value

    # -- the checks -----------------------------------------------------------------------------

    def test_create_get_list_delete(self, target, deployment_name, model_uri):
        dep = target.create(deployment_name, model_uri)
        assert isinstance(dep, Deployment)
        assert dep.name == deployment_name and dep.target == target.name
        assert dep.status is Status.READY
        assert dep.model_uri == model_uri
        assert dep.resources, "a deployment lists the resources it is made of"
        got = target.get(deployment_name)
        assert got.status is Status.READY and got.model_uri == model_uri
        assert deployment_name in [d.name for d in target.list()]
        gone = target.delete(deployment_name)
        assert isinstance(gone, Deletion) and gone.existed and gone.removed
        with pytest.raises(DeploymentNotFoundError):
            target.get(deployment_name)
        assert deployment_name not in [d.name for d in target.list()]

    def test_results_are_json_serialisable(self, target, deployment_name, model_uri):
        dep = target.create(deployment_name, model_uri)
        data = json.loads(json.dumps(dep.to_dict()))
        assert data["name"] == deployment_name and data["status"] == "ready"
        assert json.dumps(target.delete(deployment_name).to_dict())

    def test_create_twice_is_refused(self, target, deployment_name, model_uri, other_model_uri):
        target.create(deployment_name, model_uri)
        with pytest.raises(DeploymentExistsError):
            target.create(deployment_name, other_model_uri)
        assert target.get(deployment_name).model_uri == model_uri

    def test_get_missing_raises_not_found(self, target):
        with pytest.raises(DeploymentNotFoundError):
            target.get("no-such-deployment")

    def test_delete_is_idempotent(self, target, deployment_name, model_uri):
        target.create(deployment_name, model_uri)
        assert target.delete(deployment_name).existed
        again = target.delete(deployment_name)
        assert again.existed is False and again.removed == ()

    def test_replace_missing_raises_not_found(self, target, model_uri):
        with pytest.raises(DeploymentNotFoundError):
            target.replace("no-such-deployment", model_uri)

    def test_replace_swaps_the_model(self, target, deployment_name, model_uri, other_model_uri,
                                     request_body):
        target.create(deployment_name, model_uri)
        before = target.invoke(deployment_name, request_body).predictions
        dep = target.replace(deployment_name, other_model_uri)
        assert dep.status is Status.READY and dep.model_uri == other_model_uri
        assert target.get(deployment_name).model_uri == other_model_uri
        after = target.invoke(deployment_name, request_body).predictions
        assert after != before, "after replace the new model answers (classifier_v2 differs)"
        assert len(after) == len(before)

    def test_invoke_returns_prediction(self, target, deployment_name, model_uri, request_body):
        target.create(deployment_name, model_uri)
        pred = target.invoke(deployment_name, request_body, content_type="application/json")
        assert isinstance(pred, Prediction)
        assert pred.raw and pred.predictions is not None
        rows = len(json.loads(request_body)["dataframe_split"]["data"])
        assert isinstance(pred.predictions, list) and len(pred.predictions) == rows

    def test_invoke_missing_raises_not_found(self, target, request_body):
        with pytest.raises(DeploymentNotFoundError):
            target.invoke("no-such-deployment", request_body)

    def test_dry_run_changes_nothing(self, target, deployment_name, model_uri, inventory):
        inventory = self._need(inventory, "inventory")
        before = inventory()
        plan = target.deploy(DeployMode.CREATE, deployment_name, model_uri, dry_run=True)
        assert isinstance(plan, Plan) and plan.by_action(Action.CREATE)
        assert inventory() == before
        with pytest.raises(DeploymentNotFoundError):
            target.get(deployment_name)

    def test_resources_exist_and_delete_removes_them(self, target, deployment_name, model_uri,
                                                     inventory):
        inventory = self._need(inventory, "inventory")
        before = inventory()
        dep = target.create(deployment_name, model_uri)
        now = inventory()
        ids = {r.id for r in dep.resources}
        assert ids <= now, f"resources not found on the backend: {sorted(ids - now)}"
        assert now - before <= ids, f"created but not reported: {sorted(now - before - ids)}"
        target.delete(deployment_name)
        assert inventory() == before

    def test_failed_create_leaves_nothing(self, target, deployment_name, model_uri, inventory,
                                          fail_next_deploy):
        inventory = self._need(inventory, "inventory")
        fail = self._need(fail_next_deploy, "fail_next_deploy")
        before = inventory()
        fail("injected by the conformance suite")
        with pytest.raises(DeploymentFailedError) as info:
            target.create(deployment_name, model_uri)
        assert info.value.leftover == []
        assert inventory() == before
        with pytest.raises(DeploymentNotFoundError):
            target.get(deployment_name)

    def test_failed_replace_keeps_old_serving(self, target, deployment_name, model_uri,
                                              other_model_uri, inventory, fail_next_deploy):
        inventory = self._need(inventory, "inventory")
        fail = self._need(fail_next_deploy, "fail_next_deploy")
        target.create(deployment_name, model_uri)
        before = inventory()
        fail("injected by the conformance suite")
        with pytest.raises(DeploymentFailedError) as info:
            target.replace(deployment_name, other_model_uri)
        assert "injected by the conformance suite" in str(info.value)
        assert info.value.leftover == []
        assert inventory() == before, "a failed replace removes exactly what it created"
        dep = target.get(deployment_name)
        assert dep.status is Status.READY and dep.model_uri == model_uri

    def test_add_then_shift_traffic(self, target, deployment_name, model_uri, other_model_uri,
                                    request_body, inventory):
        target.create(deployment_name, model_uri)
        first_answer = target.invoke(deployment_name, request_body).predictions
        if Capability.ADD not in type(target).capabilities:
            before = inventory() if inventory else None
            with pytest.raises(UsageError):  # refused by the core, before the backend
                target.add(deployment_name, other_model_uri)
            assert inventory is None or inventory() == before
            assert target.get(deployment_name).model_uri == model_uri
            return
        dep = target.add(deployment_name, other_model_uri)
        assert dep.status is Status.READY and len(dep.variants) == 2
        first, second = dep.variants
        assert (first.model_uri, second.model_uri) == (model_uri, other_model_uri)
        if Capability.TRAFFIC not in type(target).capabilities:
            with pytest.raises(UsageError):
                target.traffic(deployment_name, {first.name: 0.0, second.name: 1.0})
            return
        dep = target.traffic(deployment_name, {first.name: 0.0, second.name: 1.0})
        # every variant that still takes traffic serves the added model (a target may also
        # promote it and drop the first variant)
        assert {v.model_uri for v in dep.variants if v.weight > 0} == {other_model_uri}
        answer = target.invoke(deployment_name, request_body).predictions
        assert answer != first_answer, "all traffic on the added model: its answers come back"
        with pytest.raises(UsageError):
            target.traffic(deployment_name, {"no-such-variant": 1.0})

    def test_capabilities_are_declared_as_data(self, target):
        caps = type(target).capabilities
        assert isinstance(caps, frozenset) and all(isinstance(c, Capability) for c in caps)
        from mldeploy.registry import capabilities_of

        assert capabilities_of(type(target)) == tuple(sorted(c.value for c in caps))

    def test_undeclared_capabilities_are_refused_before_the_backend(
            self, target, deployment_name, model_uri, other_model_uri, request_body, inventory):
        caps = type(target).capabilities
        missing = {Capability.ADD, Capability.TRAFFIC, Capability.VARIANT_INVOKE} - caps
        if not missing:
            pytest.skip("the target declares add, traffic and variant-invoke")
        target.create(deployment_name, model_uri)
        before = inventory() if inventory else None
        calls = {Capability.ADD: lambda: target.add(deployment_name, other_model_uri),
                 Capability.TRAFFIC: lambda: target.traffic(deployment_name, {"a": 1.0}),
                 Capability.VARIANT_INVOKE: lambda: target.invoke(
                     deployment_name, request_body, variant="a")}
        for capability in sorted(missing):
            with pytest.raises(UsageError) as info:
                calls[capability]()
            assert "capabilities" in (info.value.hint or "")
        assert inventory is None or inventory() == before

    def test_no_wait_returns_and_the_deployment_gets_ready(self, target, deployment_name,
                                                          model_uri):
        import time

        events: list[ProgressEvent] = []
        target._progress = events.append
        dep = target.create(deployment_name, model_uri, wait=False)
        assert isinstance(dep, Deployment) and dep.name == deployment_name
        if Capability.NO_WAIT not in type(target).capabilities:
            assert dep.status is Status.READY  # it waited, and said so
            assert any("always waits" in e.message for e in events)
            return
        deadline = time.monotonic() + 120
        while target.get(deployment_name).status is not Status.READY:
            assert target.get(deployment_name).status is not Status.FAILED
            assert time.monotonic() < deadline, "a no-wait create never got ready"
            time.sleep(0.2)

    def test_progress_events_are_typed_and_in_order(self, target, deployment_name, model_uri):
        events: list[ProgressEvent] = []
        target._progress = events.append
        target.create(deployment_name, model_uri)
        assert events, "a create reports its steps"
        assert all(isinstance(e, ProgressEvent) and e.message for e in events)
        elapsed = [e.elapsed for e in events]
        assert elapsed == sorted(elapsed) and elapsed[0] >= 0

    def test_plans_of_replace_and_add_change_nothing(self, target, deployment_name, model_uri,
                                                      other_model_uri, inventory):
        target.create(deployment_name, model_uri)
        before = inventory() if inventory else None
        modes = [DeployMode.REPLACE] + (
            [DeployMode.ADD] if Capability.ADD in type(target).capabilities else [])
        for mode in modes:
            plan = target.deploy(mode, deployment_name, other_model_uri, dry_run=True)
            assert isinstance(plan, Plan) and plan.mode is mode and plan.changes
            assert json.dumps(plan.to_dict())
        assert inventory is None or inventory() == before
        dep = target.get(deployment_name)
        assert dep.model_uri == model_uri and len(dep.variants) <= 1

    def test_invoke_with_a_dataframe_answers_as_the_json_body(self, target, deployment_name,
                                                              model_uri, request_body):
        pd = pytest.importorskip("pandas")
        split = json.loads(request_body)["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])
        target.create(deployment_name, model_uri)
        assert (target.invoke(deployment_name, frame).predictions
                == target.invoke(deployment_name, request_body).predictions)

    def test_failed_replace_leaves_no_download(self, target, deployment_name, model_uri,
                                               remote_model, fail_next_deploy):
        fail = self._need(fail_next_deploy, "fail_next_deploy")
        target.create(deployment_name, model_uri)
        fail("injected by the conformance suite")
        with pytest.raises(DeploymentFailedError):
            target.replace(deployment_name, remote_model.uri)
        left = remote_model.downloads()
        assert left == [], f"left in TMPDIR after the failed replace: {left}"
        assert target.get(deployment_name).model_uri == model_uri

    def test_unknown_config_key_names_the_nearest(self, target):
        cls = type(target)
        fields = [f.name for f in dataclasses.fields(cls.config_class) if len(f.name) > 4]
        if not fields:
            pytest.skip("the target's config has no key long enough to misspell")
        wrong = fields[0][:-1] + "x"
        with pytest.raises(ConfigError) as info:
            cls({wrong: "1"})
        assert fields[0] in str(info.value)


__all__ = ["TargetConformance", "example_model_dir"]
