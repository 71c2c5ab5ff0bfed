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

Fixtures with defaults: ``model_uri`` (the shipped example model), ``other_model_uri`` (a copy
of it with different content), ``request_body`` (the example's scoring request),
``deployment_name``. Checks that need an optional fixture skip, saying which, when it is None.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
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
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    Status,
    Target,
)


def example_model_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples" / "classifier"


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
    def other_model_uri(self, tmp_path: Path) -> str:
        dst = tmp_path / "other-model"
        shutil.copytree(example_model_dir(), dst)
        (dst / "README.txt").write_text("a second model with different content\n")
        return str(dst)

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
        assert isinstance(after, type(before))

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
                                    request_body):
        target.create(deployment_name, model_uri)
        try:
            dep = target.add(deployment_name, other_model_uri)
        except UsageError as exc:
            if "cannot add" in exc.message:
                pytest.skip(f"the target has no variants: {exc.message}")
            raise
        assert dep.status is Status.READY and len(dep.variants) == 2
        first, second = dep.variants
        assert (first.model_uri, second.model_uri) == (model_uri, other_model_uri)
        dep = target.traffic(deployment_name, {first.name: 0.0, second.name: 1.0})
        # every variant that still takes traffic serves the added model (a target may also
        # promote it and drop the first variant)
        assert {v.model_uri for v in dep.variants if v.weight > 0} == {other_model_uri}
        assert isinstance(target.invoke(deployment_name, request_body), Prediction)
        with pytest.raises(UsageError):
            target.traffic(deployment_name, {"no-such-variant": 1.0})

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
