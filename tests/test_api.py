"""The Python API and the CLI commands, over the in-memory reference target (which also runs the
shipped conformance suite, so the suite itself is exercised)."""

import json

import click
import pytest
from click.testing import CliRunner
from memory_support import register_memory_target

import mldeploy.api as api
from mldeploy._cli_deploy import COMMANDS
from mldeploy.errors import (
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentNotFoundError,
    MldeployError,
    UsageError,
)
from mldeploy.target import Action, DeployMode, Plan, Prediction, Status, encode_payload
from mldeploy.testing.conformance import TargetConformance, example_model_dir
from mldeploy.testing.memory import MemoryBackend, MemoryTarget

MODEL = str(example_model_dir())


class TestMemoryConformance(TargetConformance):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()

    @pytest.fixture
    def target(self, backend):
        return MemoryTarget(clients=backend)

    @pytest.fixture
    def inventory(self, backend):
        return backend.inventory

    @pytest.fixture
    def fail_next_deploy(self, backend):
        def fail(reason):
            backend.fail_next = reason
        return fail


@pytest.fixture
def backend():
    return MemoryBackend()


@pytest.fixture
def registered(monkeypatch, backend):
    """Make target name 'memory' resolve to a MemoryTarget on one shared backend."""
    return register_memory_target(monkeypatch, backend)


def test_deploy_by_name_with_string_config(registered, other_model):
    events = []
    dep = api.deploy("memory", name="m1", model_uri=MODEL, config={"replicas": "2"},
                     progress=events.append)
    assert dep.status is Status.READY and dep.variants[0].instance_count == 2
    assert events and events[-1].status is Status.READY
    rep = api.deploy("memory", name="m1", model_uri=other_model, mode="replace")
    assert rep.model_uri == other_model
    assert api.get("memory", name="m1").model_uri == other_model
    assert [d.name for d in api.list_deployments("memory")] == ["m1"]
    assert api.delete("memory", name="m1").existed
    assert not api.delete("memory", name="m1").existed


@pytest.fixture
def other_model(tmp_path):
    import shutil
    dst = tmp_path / "m2"
    shutil.copytree(MODEL, dst)
    (dst / "extra.txt").write_text("x")
    return str(dst)


def test_replace_routes_predictions_to_new_model(backend, other_model):
    t = MemoryTarget(clients=backend)
    body = (example_model_dir() / "serving_input_example.json").read_bytes()
    api.deploy(t, name="r", model_uri=MODEL)
    first = api.invoke(t, name="r", data=body).predictions
    api.deploy(t, name="r", model_uri=other_model, mode=DeployMode.REPLACE)
    second = api.invoke(t, name="r", data=body).predictions
    assert len(set(first)) == 1 and set(first) != set(second)
    assert len(backend.models) == 1, "the replaced model is removed after success"


def test_failed_replace_cleans_up_and_keeps_old(backend, other_model):
    t = MemoryTarget(clients=backend)
    api.deploy(t, name="r", model_uri=MODEL)
    before = backend.inventory()
    backend.fail_next = "boom"
    with pytest.raises(DeploymentFailedError, match="boom") as info:
        api.deploy(t, name="r", model_uri=other_model, mode="replace")
    assert info.value.cleaned and backend.inventory() == before


def test_dry_run_returns_plan_and_changes_nothing(backend, other_model):
    t = MemoryTarget(clients=backend)
    api.deploy(t, name="d", model_uri=MODEL)
    before = backend.inventory()
    plan = api.deploy(t, name="d", model_uri=other_model, mode="replace", dry_run=True)
    assert isinstance(plan, Plan) and backend.inventory() == before
    assert plan.by_action(Action.CREATE) and plan.by_action(Action.UPDATE)
    assert plan.by_action(Action.DELETE) and "- model" in str(plan)


def test_add_and_traffic(backend, other_model):
    t = MemoryTarget(clients=backend)
    api.deploy(t, name="a", model_uri=MODEL)
    dep = api.deploy(t, name="a", model_uri=other_model, mode="add")
    assert [v.name for v in dep.variants] == ["primary", "primary-2"]
    dep = api.traffic(t, name="a", weights="primary=1,primary-2=3")
    assert {v.name: v.weight for v in dep.variants} == {"primary": 1.0, "primary-2": 3.0}
    pred = api.invoke(t, name="a", data={"inputs": [[1.0] * 20]})
    assert pred.variant == "primary-2"


@pytest.mark.parametrize("kwargs,err,match", [
    ({"mode": "upsert"}, UsageError, "create, replace, add"),
    ({"name": " "}, UsageError, "name"),
    ({"model_uri": ""}, UsageError, "model URI"),
    ({"timeout": -1}, UsageError, "positive"),
    ({"config": {"replica": 2}}, ConfigError, "did you mean 'replicas'"),
])
def test_bad_input_is_a_usage_error(registered, kwargs, err, match):
    args = {"name": "x", "model_uri": MODEL, **kwargs}
    with pytest.raises(err, match=match) as info:
        api.deploy("memory", **args)
    assert info.value.exit_code == 2


def test_config_with_ready_target_is_refused(backend):
    with pytest.raises(UsageError, match="ready Target"):
        api.get(MemoryTarget(clients=backend), name="x", config={"replicas": 2})


def test_config_file_and_mapping_merge(registered, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("replicas: 5\nvariant_name: blue\n")
    dep = api.deploy("memory", name="f", model_uri=MODEL, config_file=f,
                     config={"replicas": "3"})
    assert dep.variants[0].name == "blue" and dep.variants[0].instance_count == 3


@pytest.mark.parametrize("weights,match", [("a", "VARIANT=WEIGHT"), ({"a": "x"}, "number"),
                                           ({"a": -1}, "negative"), ({"a": 0}, "zero"),
                                           ({}, "no traffic")])
def test_parse_weights_errors(weights, match):
    with pytest.raises(UsageError, match=match):
        api.parse_weights(weights)


def test_encode_payload_and_prediction_decoding():
    import numpy as np
    import pandas as pd

    body, ctype = encode_payload(pd.DataFrame({"a": [1, 2]}))
    assert json.loads(body) == {"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}
    assert json.loads(encode_payload(np.zeros((1, 2)))[0]) == {"inputs": [[0.0, 0.0]]}
    assert encode_payload(b"1,2", "text/csv") == (b"1,2", "text/csv")
    with pytest.raises(UsageError):
        encode_payload(object())
    assert Prediction.from_response(b'{"predictions": [1, 0]}').predictions == [1, 0]
    assert Prediction.from_response(b"[3]", "application/json; charset=utf-8").predictions == [3]
    assert Prediction.from_response(b"1\n0\n", "text/csv").predictions == ["1", "0"]


# -- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli():
    group = click.Group("mldeploy")
    for cmd in COMMANDS:
        group.add_command(cmd)
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(group, list(args), input=input)
    return run


def test_cli_roundtrip(registered, cli, tmp_path):
    r = cli("deploy", "-t", "memory", "-n", "c1", "-m", MODEL, "-C", "replicas=2")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["variants"][0]["instance_count"] == 2
    assert "c1 is ready" in r.stderr
    got = json.loads(cli("get", "-t", "memory", "-n", "c1").stdout)
    assert got["status"] == "ready" and got["model_uri"] == MODEL
    assert [d["name"] for d in json.loads(cli("list", "-t", "memory").stdout)] == ["c1"]
    body = (example_model_dir() / "serving_input_example.json").read_text()
    r = cli("invoke", "-t", "memory", "-n", "c1", "-i", "-", input=body)
    rows = len(json.loads(body)["dataframe_split"]["data"])
    model_id = registered.deployments["c1"]["primary"][1]
    assert r.exit_code == 0 and json.loads(r.stdout) == [model_id] * rows
    out = tmp_path / "o.json"
    assert cli("invoke", "-t", "memory", "-n", "c1", "-d", '{"inputs": [[1]]}', "--output-path",
               str(out)).exit_code == 0
    assert json.loads(out.read_text())["predictions"]
    r = cli("deploy", "-t", "memory", "-n", "c1", "-m", MODEL, "--mode", "replace", "--dry-run")
    assert r.exit_code == 0 and "replace c1 on memory would:" in r.stdout
    assert json.loads(cli("delete", "-t", "memory", "-n", "c1").stdout)["existed"] is True


def test_cli_raises_mldeploy_errors_for_the_bridge(registered, cli):
    r = cli("deploy", "-t", "memory", "-n", "c2", "-m", MODEL, "-C", "replicaz=2")
    assert isinstance(r.exception, ConfigError) and "replicas" in str(r.exception)
    r = cli("get", "-t", "memory", "-n", "nope")
    assert isinstance(r.exception, DeploymentNotFoundError)
    r = cli("invoke", "-t", "memory", "-n", "c2")
    assert isinstance(r.exception, UsageError) and "exactly one" in str(r.exception)
    r = cli("deploy", "-t", "memory", "-n", "c2", "-m", MODEL, "-C", "novalue")
    assert isinstance(r.exception, ConfigError)
    cli("deploy", "-t", "memory", "-n", "c2", "-m", MODEL)
    r = cli("deploy", "-t", "memory", "-n", "c2", "-m", MODEL)
    assert isinstance(r.exception, DeploymentExistsError)
    r = cli("traffic", "-t", "memory", "-n", "c2", "-w", "ghost=1")
    assert isinstance(r.exception, MldeployError) and "ghost" in str(r.exception)


def test_cli_bridge_names_what_a_failed_deploy_left_behind(monkeypatch, capsys):
    from mldeploy import cli as cli_module
    from mldeploy.errors import DeploymentFailedError

    def fail(*_a, **_kw):
        raise DeploymentFailedError("replace of churn failed: the new pods crashed",
                                    hint="the old version keeps serving",
                                    cleaned=["Deployment churn-canary"],
                                    leftover=["Service churn-canary", "ConfigMap churn-x"])

    monkeypatch.setattr(api, "deploy", fail)  # the bridge is the group: it sees what a verb raises
    with pytest.raises(SystemExit) as info:
        cli_module.main(["deploy", "-t", "memory", "-n", "churn", "-m", MODEL])
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 1
    assert err == ["error: replace of churn failed: the new pods crashed — the old version keeps "
                   "serving",
                   "not undone, see to it by hand: Service churn-canary, ConfigMap churn-x"]
    # a plugin whose hint already names them: no second copy
    hinted = DeploymentFailedError("failed", hint="remove Service a by hand",
                                   leftover=["Service a"])
    assert cli_module.error_lines(hinted) == ["error: failed — remove Service a by hand"]
