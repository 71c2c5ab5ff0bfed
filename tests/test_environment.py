"""The model's requirements against the serving environment (mldeploy.container.environment)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mldeploy.container import environment
from mldeploy.testing.aws import free_port

MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))


def _model(tmp_path: Path, example_model: Path, requirements: list[str]) -> Path:
    """The example model with other requirements (python_env.yaml says -r requirements.txt)."""
    dest = tmp_path / "model"
    shutil.copytree(example_model, dest)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return dest


def test_missing_mismatched_and_skipped_requirements(tmp_path, example_model):
    numpy = importlib.metadata.version("numpy")
    model = _model(tmp_path, example_model, [
        "mlflow==2.0.1",  # mlflow-skinny is installed: a mismatch, not missing
        f"numpy=={numpy}",
        "numpy-but-not-really>=1",
        "absent-package-for-mldeploy-tests==0.13.0 ; python_version >= '3.8'",
        "windows-only-thing ; sys_platform == 'win32'",  # marker false here: skipped
        "--extra-index-url https://example.invalid/simple",  # pip option: skipped
        "mldeploy==99",  # the runtime itself: skipped
        "pandas<1",
    ])
    report = environment.check(model)
    assert report.source == "python_env.yaml"
    assert report.missing == (
        "numpy-but-not-really>=1",
        "absent-package-for-mldeploy-tests==0.13.0 ; python_version >= '3.8'",
    )
    assert [m.requirement for m in report.mismatched] == ["mlflow==2.0.1", "pandas<1"]
    assert report.mismatched[1].installed == importlib.metadata.version("pandas")
    line = report.missing_line(model)
    assert "\n" not in line and "numpy-but-not-really>=1" in line and "pip install" in line
    assert "--env-manager virtualenv" in line


def test_requirements_txt_and_conda_yaml_are_read_when_there_is_no_python_env(
        tmp_path, example_model):
    model = _model(tmp_path, example_model, ["not-installed-one"])
    (model / "python_env.yaml").unlink()
    (model / "MLmodel").write_text((model / "MLmodel").read_text().replace(
        "      virtualenv: python_env.yaml\n", ""))
    assert environment.check(model).missing == ("not-installed-one",)
    (model / "requirements.txt").unlink()
    (model / "conda.yaml").write_text(
        "dependencies:\n- python=3.11\n- pip:\n  - not-installed-two==1.0\n")
    report = environment.check(model)
    assert report.source == "conda.yaml" and report.missing == ("not-installed-two==1.0",)


def test_the_shipped_model_passes(example_model):
    assert environment.require(example_model) is None


def test_not_a_model_is_one_line(tmp_path):
    assert "has no MLmodel file" in environment.require(tmp_path)


def test_serve_stops_within_seconds_with_one_line_naming_the_missing_package(
        tmp_path, example_model):
    """The issue's case: an MLflow sklearn model whose requirements say skops, served where
    skops is missing, died with a traceback and "Worker failed to boot". (skops comes with the
    full mlflow package installed here, so a package no environment has stands in for it.)"""
    pytest.importorskip("sklearn")
    absent = "skops-absent-for-mldeploy-tests==0.13.0"
    model = _model(tmp_path, example_model, [
        "mlflow==3.17.2", "scikit-learn", absent, "cloudpickle"])
    for engine in ("flask", "mlserver"):
        if engine == "mlserver" and importlib.util.find_spec("mlserver") is None:
            continue
        started = time.monotonic()
        proc = subprocess.run(
            [MLDEPLOY, "serve", "-m", str(model), "--port", str(free_port(3)),
             "--engine", engine],
            capture_output=True, text=True, timeout=120, check=False,
        )
        took = time.monotonic() - started
        assert proc.returncode == 3, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and absent in errors[0], proc.stderr
        assert f"pip install '{absent}'" in errors[0]
        assert "Traceback" not in proc.stderr and "Worker failed to boot" not in proc.stderr
        assert took < 60, took  # seconds, on a loaded machine; the model is never loaded
