"""The CLI's one error bridge and the server settings it builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mldeploy.container.settings import ServerSettings, SettingsError

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
    # replace needs the cluster's state: without a kubeconfig it is a usage error (exit 2)
    replace = subprocess.run(
        [MLDEPLOY, "deploy", "-t", "kubernetes", "-n", "demo", "-m", str(example_model),
         "-C", "image=registry.example/demo:1", "--mode", "replace", "--dry-run"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert replace.returncode == 2 and "kubeconfig" in replace.stderr
