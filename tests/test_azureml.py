"""Fast tests of the Azure ML target's own logic: traffic arithmetic, the typed config, names,
error mapping, the offline create plan (Azure ML YAML) and the registry / MLflow plugin wiring.
The SDK-driven flows are in integration/test_azureml_sdk.py (the real azure-ai-ml against a
control-plane fake and Azurite)."""

from __future__ import annotations

import pytest

from mldeploy.errors import ConfigError, DeploymentNotFoundError, TargetError, UsageError
from mldeploy.plugins.azureml import _traffic as tr
from mldeploy.plugins.azureml.config import AzureMLConfig, Cloud
from mldeploy.testing.conformance import example_model_dir

# -- traffic ------------------------------------------------------------------------------------

def test_fractions_become_whole_percents_summing_to_100():
    assert tr.percentages({"blue": 0.9, "green": 0.1}, ["blue", "green"]) == {
        "blue": 90, "green": 10}


def test_thirds_round_by_largest_remainder():
    out = tr.percentages({"a": 1, "b": 1, "c": 1}, ["a", "b", "c"])
    assert sum(out.values()) == 100 and sorted(out.values()) == [33, 33, 34]


def test_zero_weights_are_kept_and_unnamed_deployments_get_zero():
    out = tr.percentages({"Green": 1.0}, ["blue", "green", "gold"])
    assert out == {"blue": 0, "green": 100, "gold": 0}


def test_names_are_matched_lower_cased():
    assert tr.percentages({"BLUE": 30, "green": 70}, ["blue", "Green"]) == {
        "blue": 30, "green": 70}


@pytest.mark.parametrize("weights", [{"nope": 1.0}, {"blue": -1}, {"blue": 0},
                                     {"blue": float("nan")}, {"blue": True}])
def test_bad_weights_are_usage_errors(weights):
    with pytest.raises(UsageError):
        tr.percentages(weights, ["blue", "green"])


def test_shares_fill_in_dropped_zero_weights():
    assert tr.shares({"green": 100}, ["blue", "green"]) == {"blue": 0.0, "green": 1.0}


def test_steps_shift_the_rest_proportionally():
    out = tr.steps([10, 50, 100], {"blue": 80, "gold": 20}, "green")
    assert out == [{"blue": 72, "gold": 18, "green": 10}, {"blue": 40, "gold": 10, "green": 50},
                   {"blue": 0, "gold": 0, "green": 100}]


# -- config -------------------------------------------------------------------------------------

def test_config_from_cli_strings():
    from mldeploy.config import build_config, parse_assignments

    cfg = build_config(AzureMLConfig, parse_assignments([
        "cloud=AzureChinaCloud", "traffic_steps=10,50,100", "mirror_percent=20",
        "liveness_probe.initial_delay=90", "env.LOG_LEVEL=debug"]))
    assert cfg.cloud is Cloud.CHINA and cfg.traffic_steps == [10, 50, 100]
    assert cfg.liveness_probe.initial_delay == 90 and cfg.env == {"LOG_LEVEL": "debug"}


@pytest.mark.parametrize("bad", [
    {"mirror_percent": "51"},  # Azure allows at most 50
    {"traffic_steps": "50,10,100"},
    {"traffic_steps": "10,50"},
    {"cloud": "AzureMars"},
    {"instance_count": "0"},
    {"instace_type": "Standard_DS3_v2"},  # a typo
    {"environment": "azureml-mlflow", "image": "x/y:1"},
    {"env": {"1BAD": "x"}},
])
def test_bad_config_is_refused(bad):
    from mldeploy.config import build_config

    with pytest.raises(ConfigError):
        build_config(AzureMLConfig, bad)


def test_probe_defaults_are_tuned_for_slow_loads():
    cfg = AzureMLConfig()
    # Azure's defaults (10 s delay, 30 failures of a 10 s period) restart a container still loading
    assert cfg.liveness_probe.initial_delay * 1 + cfg.liveness_probe.period * \
        cfg.liveness_probe.failure_threshold >= 600


# -- names and location -------------------------------------------------------------------------

def _target(**cfg):
    pytest.importorskip("azure.ai.ml")
    from mldeploy.plugins.azureml.target import AzureMLTarget

    return AzureMLTarget(cfg, location="sub-1/rg-1/ws-1")


@pytest.mark.parametrize("name", ["ab", "1abc", "a_b", "x" * 33, "abc-"])
def test_endpoint_names_follow_azure_rules(name):
    with pytest.raises(UsageError):
        _target().check_name(name)


def test_no_workspace_is_a_usage_error():
    pytest.importorskip("azure.ai.ml")
    from mldeploy.plugins.azureml.target import AzureMLTarget

    with pytest.raises(UsageError) as info:
        AzureMLTarget({}).get("my-endpoint")
    assert "SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE" in info.value.hint


# -- errors -------------------------------------------------------------------------------------

def test_sdk_errors_map_to_mldeploy_errors():
    core = pytest.importorskip("azure.core.exceptions")
    from mldeploy.plugins.azureml.errors import azure_errors

    with pytest.raises(DeploymentNotFoundError):
        with azure_errors("get x", name="x"):
            raise core.ResourceNotFoundError("gone")
    with pytest.raises(TargetError) as info:
        with azure_errors("get x"):
            raise core.ClientAuthenticationError("AADSTS7000215: secret=abc123 is wrong")
    assert "DefaultAzureCredential" in info.value.hint
    with pytest.raises(TargetError) as info:
        with azure_errors("get x"):
            raise core.ServiceRequestError("connection refused")
    assert "REQUESTS_CA_BUNDLE" in info.value.hint


# -- plan ---------------------------------------------------------------------------------------

def test_create_plan_renders_azure_yaml_offline():
    import yaml

    target = _target(image="acr.example/model:1", traffic_steps="10,100")
    target.clients = object()  # any SDK call would fail: a create plan makes none
    plan = target.plan("create", "my-endpoint", str(example_model_dir()))
    kinds = [c.resource.kind for c in plan.changes]
    assert kinds == ["endpoint", "model", "deployment", "traffic"]
    docs = list(yaml.safe_load_all(plan.to_yaml()))
    endpoint, deployment = docs
    assert endpoint["$schema"].endswith("managedOnlineEndpoint.schema.json")
    assert endpoint["name"] == "my-endpoint" and endpoint["auth_mode"] == "key"
    assert deployment["name"] == "blue" and deployment["endpoint_name"] == "my-endpoint"
    env = deployment["environment"]
    assert env["image"] == "acr.example/model:1"
    assert env["inference_config"]["scoring_route"] == {"port": 8080, "path": "/invocations"}
    assert deployment["liveness_probe"]["initial_delay"] == 30


def test_no_code_plan_spells_out_the_start_time_install():
    plan = _target(environment="azureml-mlflow").plan("create", "my-endpoint",
                                                       str(example_model_dir()))
    detail = [c.detail for c in plan.changes if c.resource.kind == "deployment"][0]
    assert "installs the model's packages" in detail


# -- registry and MLflow -----------------------------------------------------------------------

def test_registered_as_azureml_target():
    pytest.importorskip("azure.ai.ml")
    from mldeploy.registry import get_target

    target = get_target("azureml:/sub-1/rg-1/ws-1")
    assert type(target).__name__ == "AzureMLTarget" and target.location == "sub-1/rg-1/ws-1"


def test_mlflow_loads_the_plugin():
    pytest.importorskip("azure.ai.ml")
    from mlflow.deployments.plugin_manager import DeploymentPlugins

    plugin = DeploymentPlugins()["mldeploy-azureml"]
    assert callable(plugin.run_local) and "azureml" in plugin.target_help()


# -- the fake's body checks use the SDK's own REST models ---------------------------------------

def test_fake_checks_bodies_with_the_sdks_rest_models():
    pytest.importorskip("azure.ai.ml")
    from mldeploy.plugins.azureml.testing import _schema

    endpoint = _schema.model("OnlineEndpoint")
    good = {"location": "westeurope", "properties": {"authMode": "Key", "traffic": {"blue": 100}}}
    _schema.check(endpoint, good)
    for bad, where in [
        ({"properties": {"authMode": "Key"}}, "$.location"),  # required
        ({**good, "colour": "red"}, "$.colour"),  # unknown key
        ({"location": "x", "properties": {"authMode": "Pin"}}, "authMode"),  # not an enum value
        ({"location": "x", "properties": {"authMode": "Key", "traffic": {"blue": "all"}}},
         "traffic.blue"),
    ]:
        with pytest.raises(_schema.SchemaError) as info:
            _schema.check(endpoint, bad)
        assert where in str(info.value)
    deployment = _schema.model("OnlineDeployment")
    with pytest.raises(_schema.SchemaError) as info:  # an unknown discriminator value
        _schema.check(deployment, {"location": "x", "properties": {"endpointComputeType": "Moon"}})
    assert "endpointComputeType" in str(info.value)


@pytest.mark.parametrize("cloud, host", [("AzureCloud", "management.azure.com"),
                                         ("AzureChinaCloud", "management.chinacloudapi.cn"),
                                         ("AzureUSGovernment", "management.usgovcloudapi.net")])
def test_cloud_picks_the_resource_manager(cloud, host, monkeypatch):
    pytest.importorskip("azure.ai.ml")
    from mldeploy.plugins.azureml.testing import AZURE_ENV

    for key in AZURE_ENV:
        monkeypatch.delenv(key, raising=False)
    target = _target(cloud=cloud)
    ml = target._clients().ml_client  # builds the client; no request is sent
    assert ml._base_url == f"https://{host}"
    assert type(ml._credential).__name__ == "DefaultAzureCredential"


def test_the_deployment_sets_only_settings_the_serving_container_reads():
    """The custom container's environment variables are the container's own names (a made-up
    name such as MLDEPLOY_PORT would be ignored and the port left to chance)."""
    pytest.importorskip("azure.ai.ml")
    from mldeploy.config import build_config
    from mldeploy.container.settings import ENV_NAMES
    from mldeploy.plugins.azureml import _specs

    cfg = build_config(AzureMLConfig, {})
    dep = _specs.deployment(cfg, "ep", "blue", model=None, image="img:1",
                            model_uri="models:/m/1", seq=1)
    names = set(dep.environment_variables or {})
    assert names and names <= set(ENV_NAMES.values())
    assert dep.environment_variables[ENV_NAMES["port"]] == "8080"


def test_no_wait_is_not_offered_the_target_waits_and_says_so():
    from mldeploy.plugins.azureml.target import AzureMLTarget
    from mldeploy.target import Capability

    said = []
    target = AzureMLTarget({}, location="s/r/w", progress=lambda e: said.append(e.message))
    assert Capability.NO_WAIT not in target.capabilities
    assert target._effective_wait(False) is True
    assert said == ["the azureml target always waits until the change is ready"]
