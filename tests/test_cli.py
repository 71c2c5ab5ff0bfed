"""The CLI's one error bridge and the server settings it builds."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from memory_support import register_memory_target

from mldeploy import api
from mldeploy.cli import cli
from mldeploy.container.settings import ServerSettings, SettingsError
from mldeploy.errors import (
    EXIT_CODES,
    ConfigError,
    DeploymentFailedError,
    InvocationError,
    MissingExtraError,
    PredictionError,
)
from mldeploy.testing.memory import MemoryBackend

MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLDEPLOY, *args], capture_output=True, text=True, timeout=120)


def test_bad_model_uri_is_one_line_and_exit_code_2(tmp_path):
    result = _cli("serve", "-m", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_directory_without_mlmodel_is_exit_code_2(tmp_path):
    result = _cli("serve", "-m", str(tmp_path))
    assert result.returncode == 2
    assert "MLmodel" in result.stderr


def test_click_usage_errors_are_exit_code_2():
    result = _cli("serve", "--port", "notaport")
    assert result.returncode == 2 and "notaport" in result.stderr


def test_version_and_help():
    assert _cli("--version").stdout.startswith("mldeploy, version ")
    help_text = _cli("--help").stdout
    assert "serve" in help_text


# --- serving a remote model: its download is removed when the server exits -----------------


@pytest.fixture
def tracking_run(tmp_path, monkeypatch, example_model, broken_example_model):
    """A file tracking store in tmp_path with one run: the example model logged at 'model' and
    one that fails its warm-up at 'broken'. ``env`` points a server at the store and at an empty
    TMPDIR (``tmp``), where its download lands."""
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true",
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    with monkeypatch.context() as m:
        m.setenv("MLFLOW_TRACKING_URI", uri)
        m.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("serve")).info.run_id
        client.log_artifacts(run_id, str(example_model), "model")
        client.log_artifacts(run_id, str(broken_example_model), "broken")
    return SimpleNamespace(run_id=run_id, env={**os.environ, **env}, tmp=tmp_path / "tmp")


SERVE_COMMANDS = {
    "mldeploy serve": [MLDEPLOY, "serve", "-m"],
    "python -m mldeploy.container serve": [sys.executable, "-m", "mldeploy.container", "serve",
                                           "-m"],
}


def _start(command: str, model_uri: str, env: dict, log: Path) -> SimpleNamespace:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [*SERVE_COMMANDS[command], model_uri, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return SimpleNamespace(proc=proc, url=f"http://127.0.0.1:{port}", log=log)


def _ping(server: SimpleNamespace) -> int:
    try:
        with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as response:
            return response.status
    except OSError:
        return 0


def _workers(server: SimpleNamespace) -> set[int]:
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in children.read_text().split()} if children.exists() else set()


def _wait(server: SimpleNamespace, ready, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"server not ready: {server.log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(server: SimpleNamespace) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@pytest.mark.parametrize("command", SERVE_COMMANDS)
def test_serving_a_run_removes_its_download_on_sigterm_not_when_a_worker_exits(
        tracking_run, tmp_path, command):
    server = _start(command, f"runs:/{tracking_run.run_id}/model", tracking_run.env,
                    tmp_path / "serve.log")
    try:
        _wait(server, lambda: _ping(server) == 200)
        (download,) = tracking_run.tmp.glob("mldeploy-model-*")
        assert (download / "model" / "MLmodel").is_file()
        # A worker that exits (gunicorn restarts it) leaves the download to the next worker.
        (worker,) = _workers(server)
        os.kill(worker, signal.SIGTERM)
        _wait(server, lambda: _workers(server) - {worker} and _ping(server) == 200)
        assert (download / "model" / "MLmodel").is_file()
    finally:
        code = _stop(server)
    assert code == 0, server.log.read_text()[-3000:]
    assert not download.exists()
    assert list(tracking_run.tmp.glob("mldeploy-model-*")) == []


def test_a_model_that_fails_to_load_has_its_download_removed(tracking_run, tmp_path):
    server = _start("mldeploy serve", f"runs:/{tracking_run.run_id}/broken", tracking_run.env,
                    tmp_path / "serve.log")
    try:
        code = server.proc.wait(90)
    finally:
        _stop(server)
    log = server.log.read_text()
    # it was downloaded, then failed: exit code 3 (the README's table)
    assert code == 3 and "mldeploy-model-" in log, (code, log[-3000:])
    assert list(tracking_run.tmp.glob("mldeploy-model-*")) == []


def test_serving_a_local_model_leaves_it_in_place(tmp_path, example_model):
    import shutil

    model = Path(shutil.copytree(example_model, tmp_path / "model"))
    before = sorted(p.name for p in model.iterdir())
    server = _start("mldeploy serve", str(model), dict(os.environ), tmp_path / "serve.log")
    try:
        _wait(server, lambda: _ping(server) == 200)
    finally:
        assert _stop(server) == 0, server.log.read_text()[-3000:]
    assert sorted(p.name for p in model.iterdir()) == before


def test_settings_precedence_flag_then_environment_then_default():
    env = {"SAGEMAKER_BIND_TO_PORT": "9001", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
           "SAGEMAKER_MODEL_SERVER_TIMEOUT": "12.5", "MLDEPLOY_MAX_REQUEST_BYTES": "100"}
    s = ServerSettings.resolve(env, port=None, workers=5)
    assert (s.port, s.workers, s.timeout, s.max_request_bytes) == (9001, 5, 12.5, 100)
    default = ServerSettings.resolve({})
    assert default.port == 8080 and default.timeout == 60 and default.workers >= 1
    assert default.max_request_bytes == 6 * 1024 * 1024


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"SAGEMAKER_BIND_TO_PORT": "http"},
         "port from environment variable SAGEMAKER_BIND_TO_PORT"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "port must be 1-65535"),
        ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "0"}, "timeout must be positive"),
        ({"MLDEPLOY_ENGINE": "uvicorn"}, "engine must be one of flask, mlserver"),
    ],
)
def test_bad_settings_name_the_source(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        ServerSettings.resolve(env)


def test_unknown_setting_is_an_error():
    with pytest.raises(SettingsError, match="unknown setting"):
        ServerSettings.resolve({}, bogus=1)


def test_kubernetes_dry_run_prints_valid_manifests_without_a_cluster(tmp_path, example_model):
    import os

    import kubernetes_validate
    import yaml

    result = subprocess.run(
        [MLDEPLOY, "deploy", "-t", "kubernetes:/ctx/ml", "-n", "demo", "-m", str(example_model),
         "-C", "image=registry.example/demo:1", "--dry-run", "-o", "yaml"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert sorted(d["kind"] for d in docs) == [
        "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "ml"
        kubernetes_validate.validate(doc, "1.33", strict=True)
    # replace renders offline too (#15): nothing compared with a cluster, and it says so
    replace = subprocess.run(
        [MLDEPLOY, "deploy", "-t", "kubernetes", "-n", "demo", "-m", str(example_model),
         "-C", "image=registry.example/demo:1", "--mode", "replace", "--dry-run"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert replace.returncode == 0, replace.stderr
    assert "not compared with the cluster" in replace.stdout
    assert "rendering the manifests without comparing" in replace.stderr


# --- the one error bridge, through click's CliRunner --------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, list(args), input=input)
    return invoke


@pytest.fixture
def memory(monkeypatch):
    """Target name 'memory' -> a MemoryTarget on one shared backend."""
    return register_memory_target(monkeypatch, MemoryBackend())


def test_importing_the_cli_imports_no_command_body():
    code = ("import sys, mldeploy.cli\n"
            "heavy = ('mlflow', 'pandas', 'boto3', 'botocore', 'docker', 'kubernetes', 'yaml', "
            "'flask', 'gunicorn', 'mldeploy.plugins', 'mldeploy.api', 'mldeploy.model_uri')\n"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_commands_are_registered_at_import():
    assert {"serve", "deploy", "delete", "get", "list", "invoke", "traffic", "build-docker",
            "generate-dockerfile", "push", "targets", "config"} <= set(cli.commands)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_or_after_the_subcommand(run, where, monkeypatch):
    def boom(*_a, **_kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "get", boom)
    args = ["get", "-t", "memory", "-n", "x"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = run(*args)
    assert isinstance(result.exception, RuntimeError)  # --debug: the traceback, not one line
    plain = run("get", "-t", "memory", "-n", "x")
    assert plain.exit_code == 1 and isinstance(plain.exception, SystemExit)
    (line,) = plain.stderr.strip().splitlines()
    assert line.startswith("error: internal error (RuntimeError: a bug); rerun with --debug")


def test_debug_shows_the_traceback_of_an_mldeploy_error_too(run):
    result = run("get", "-t", "nosuchtarget", "-n", "x", "--debug")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no deployment target named")
    quiet = run("get", "-t", "nosuchtarget", "-n", "x")
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr


def test_a_value_debug_after_the_options_end_is_left_alone(run, memory):
    # after "--" nothing is an option: there is no argument to take it, so click refuses it
    result = run("list", "-t", "memory", "--", "--debug")
    assert result.exit_code == 2 and "--debug" in result.stderr


def test_errors_are_redacted_by_the_bridge(run, monkeypatch):
    def fail(*_a, **_kw):
        raise DeploymentFailedError("cannot fetch https://bob:hunter2@mlflow.example/m",
                                    leftover=["s3-object s3://b/k?X-Amz-Signature=deadbeef"])

    monkeypatch.setattr(api, "deploy", fail)
    result = run("deploy", "-t", "memory", "-n", "c", "-m", "x")
    assert result.exit_code == 1
    assert "hunter2" not in result.stderr and "deadbeef" not in result.stderr
    assert "https://***@mlflow.example/m" in result.stderr


# --- the exit-code table: README == errors.EXIT_CODES, and each row -------------------------


def _readme_exit_codes() -> dict[int, str]:
    text = README.read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {int(m[1]): m[2].strip() for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.M)}


def test_readme_exit_code_table_is_the_codes_table():
    assert {code: text.replace("`", "") for code, text in _readme_exit_codes().items()} == \
        EXIT_CODES


def test_exit_0_and_2_for_config_exists_and_not_found(run, memory):
    model = str(Path(__file__).resolve().parents[1] / "src/mldeploy/examples/classifier")
    assert run("deploy", "-t", "memory", "-n", "c", "-m", model).exit_code == 0
    assert run("deploy", "-t", "memory", "-n", "c", "-m", model).exit_code == 2  # exists
    assert run("deploy", "-t", "memory", "-n", "d", "-m", model, "-C", "replicaz=1").exit_code == 2
    assert run("get", "-t", "memory", "-n", "nope").exit_code == 2  # not found
    assert run("get", "-t", "nosuch", "-n", "x").exit_code == 2  # unknown target
    assert run("get", "-t", "memory").exit_code == 2  # click's own usage error


@pytest.mark.parametrize(("error", "code"), [
    (InvocationError("the model on 'c' answered 400 BAD_REQUEST: no", status=400), 2),
    (PredictionError("the model on 'c' answered 504 REQUEST_TIMEOUT: slow", status=504), 1),
    (MissingExtraError("the docker SDK is not installed", hint="pip install 'mldeploy[local]'"),
     2),
    (DeploymentFailedError("replace failed"), 1),
    (KeyboardInterrupt(), 130),
])
def test_exit_codes_of_invoke_answers_missing_extras_failures_and_ctrl_c(run, monkeypatch, error,
                                                                         code):
    def fail(*_a, **_kw):
        raise error

    monkeypatch.setattr(api, "invoke", fail)
    result = run("invoke", "-t", "memory", "-n", "c", "-d", "{}")
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_busy_port_exits_2_on_both_serve_commands(tmp_path, example_model):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        for args in ([MLDEPLOY, "serve"], [sys.executable, "-m", "mldeploy.container", "serve"]):
            result = subprocess.run([*args, "-m", str(example_model), "--port", port],
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 2, result.stderr
            (line,) = result.stderr.strip().splitlines()
            assert f"port {port} on 127.0.0.1 is in use" in line


@pytest.mark.parametrize("command", SERVE_COMMANDS)
def test_serve_never_prints_a_uris_password(command):
    uri = "file://admin:S3cr3tPass@localhost/no/such/model"
    result = subprocess.run([*SERVE_COMMANDS[command], uri], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "S3cr3tPass" not in result.stderr and "***@localhost" in result.stderr


# --- one serve path -------------------------------------------------------------------------


def test_both_serve_commands_call_the_one_serve_function(monkeypatch, example_model, run):
    from mldeploy.container import __main__ as container_main
    from mldeploy.container import engines

    seen = []
    monkeypatch.setattr(engines, "run", lambda settings: seen.append(settings) or 0)
    args = ["-m", str(example_model), "--port", "8123", "--workers", "2", "--threads", "3",
            "--timeout", "9", "--max-request-bytes", "1000", "--engine", "flask"]
    assert run("serve", *args).exit_code == 0
    assert container_main.main(["serve", *args]) == 0
    assert len(seen) == 2 and seen[0] == seen[1]
    assert (seen[0].port, seen[0].workers, seen[0].threads, seen[0].max_request_bytes) == (
        8123, 2, 3, 1000)


def test_the_engine_list_is_the_registry_everywhere():
    from mldeploy._cli_image import build_docker
    from mldeploy.container.engines import ENGINE_NAMES, ENGINES, ports
    from mldeploy.container.image import options
    from mldeploy.container.settings import ENGINES as SETTINGS_ENGINES
    from mldeploy.plugins.local.config import LocalConfig
    from mldeploy.plugins.sagemaker.config import Engine

    def choices(command, name):
        (param,) = [p for p in command.params if p.name == name]
        return tuple(param.type.choices)

    assert choices(cli.commands["serve"], "engine") == ENGINE_NAMES
    assert choices(build_docker, "engine") == ENGINE_NAMES
    assert SETTINGS_ENGINES == options.ENGINES == ENGINE_NAMES
    import dataclasses
    (engine_field,) = [f for f in dataclasses.fields(LocalConfig) if f.name == "engine"]
    assert tuple(engine_field.metadata["choices"]) == ENGINE_NAMES
    assert tuple(e.value for e in Engine) == ENGINE_NAMES
    assert ports(ServerSettings(engine="mlserver", port=9000)) == (9000, 9001, 9002)
    assert ENGINES["mlserver"].extra == "mlserver" and ENGINES["flask"].extra is None


# --- mldeploy targets / mldeploy config ------------------------------------------------------


def test_targets_lists_the_installed_targets_with_extras_and_capabilities(run, monkeypatch):
    from mldeploy.plugins.sagemaker import SageMakerTarget

    monkeypatch.setattr(SageMakerTarget, "capabilities", frozenset({"traffic", "add"}),
                        raising=False)
    result = run("targets", "-o", "json")
    assert result.exit_code == 0, result.output
    infos = {t["name"]: t for t in json.loads(result.stdout)}
    assert {"sagemaker", "local", "kubernetes"} <= set(infos)
    assert infos["sagemaker"]["installed"] is True
    assert infos["sagemaker"]["install"] == "pip install 'mldeploy[sagemaker]'"
    assert infos["sagemaker"]["capabilities"] == ["add", "traffic"]
    text = run("targets").stdout
    assert re.search(r"^sagemaker +installed; extra: sagemaker; capabilities: add, traffic$",
                     text, re.M), text


def test_capabilities_are_read_from_whatever_shape_a_target_declares():
    import enum
    from dataclasses import dataclass

    from mldeploy.registry import capabilities_of

    class Cap(enum.Flag):
        ADD = enum.auto()
        TRAFFIC = enum.auto()

    @dataclass(frozen=True)
    class Caps:
        add: bool = True
        no_wait: bool = False

    assert capabilities_of(type("T", (), {})) == ()
    assert capabilities_of(type("T", (), {"capabilities": Cap.ADD | Cap.TRAFFIC})) == (
        "add", "traffic")
    assert capabilities_of(type("T", (), {"capabilities": Caps()})) == ("add",)
    assert capabilities_of(type("T", (), {"capabilities": {"add": True, "traffic": False}})) == (
        "add",)
    assert capabilities_of(type("T", (), {"capabilities": "add"})) == ()


def test_config_lists_every_key_with_type_default_and_help(run):
    result = run("config", "-t", "sagemaker", "-o", "json")
    assert result.exit_code == 0, result.output
    keys = {k["key"]: k for k in json.loads(result.stdout)}
    assert keys["instance_count"]["type"] == "int | None" and keys["instance_count"]["min"] == 1
    memory = keys["serverless_config.memory_size_in_mb"]
    assert (memory["default"], memory["step"], memory["type"]) == (2048, 1024, "int")
    assert keys["build.engine"]["type"] == "one of flask, mlserver | None"  # None: not given
    assert "default flask" in keys["build.engine"]["help"]
    assert keys["adopt"]["type"] == "bool" and keys["adopt"]["default"] is False
    assert keys["execution_role_arn"]["help"]
    text = run("config", "-t", "local").stdout
    assert "  port  (int, default 0)" in text and "gateway port" in text
    assert run("config", "-t", "nosuch").exit_code == 2


def test_config_keys_listed_are_the_keys_build_config_accepts():
    from mldeploy.config import build_config, describe_config, parse_assignments
    from mldeploy.plugins.kubernetes.config import KubernetesConfig
    from mldeploy.plugins.local.config import LocalConfig
    from mldeploy.plugins.sagemaker.config import SageMakerConfig

    for cls in (SageMakerConfig, LocalConfig, KubernetesConfig):
        for key in describe_config(cls):
            if key.get("required") or key["default"] is None:
                continue
            value = key["default"]
            text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            try:  # the key and its default's text are accepted (a section may need more keys)
                build_config(cls, parse_assignments([f"{key['key']}={text}"]))
            except ConfigError as exc:
                assert "." in key["key"] and "unknown" not in exc.message and \
                    "is not" not in exc.message, (key, exc)


# --- -o means the same on every verb ----------------------------------------------------------


def test_output_is_the_format_of_stdout_on_every_verb(run, memory, tmp_path):
    model = str(Path(__file__).resolve().parents[1] / "src/mldeploy/examples/classifier")
    body = '{"inputs": [[1]]}'
    verbs = {
        "deploy": ["deploy", "-t", "memory", "-n", "c", "-m", model],
        "get": ["get", "-t", "memory", "-n", "c"],
        "list": ["list", "-t", "memory"],
        "invoke": ["invoke", "-t", "memory", "-n", "c", "-d", body],
        "traffic": ["traffic", "-t", "memory", "-n", "c", "-w", "primary=1"],
        "targets": ["targets"],
        "config": ["config", "-t", "local"],
    }
    assert run(*verbs["deploy"], "-o", "json").exit_code == 0
    for verb, args in verbs.items():
        if verb == "deploy":
            args = [*args[:-2], "-m", model, "--mode", "replace"]
        as_json = run(*args, "-o", "json")
        as_yaml = run(*args, "-o", "yaml")
        assert as_json.exit_code == as_yaml.exit_code == 0, (verb, as_json.output)
        got_json, got_yaml = json.loads(as_json.stdout), yaml.safe_load(as_yaml.stdout)
        if verb in ("deploy", "traffic"):  # a fresh deployment each time: compare the shape
            assert got_json.keys() == got_yaml.keys() and got_json["name"] == "c"
        else:
            assert got_json == got_yaml, verb
    out = tmp_path / "raw.json"
    assert run("invoke", "-t", "memory", "-n", "c", "-d", body, "--output-path",
               str(out)).exit_code == 0
    assert json.loads(out.read_text())["predictions"]
    deleted = run("delete", "-t", "memory", "-n", "c", "-o", "yaml")
    assert yaml.safe_load(deleted.stdout)["existed"] is True
