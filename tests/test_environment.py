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


def _skops_model(dest: Path) -> Path:
    """The issue's model: scikit-learn saved by MLflow with skops, requirements as MLflow infers
    them (they name skops)."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    model = LogisticRegression().fit(x, [0, 1] * 5)
    mlflow.sklearn.save_model(model, str(dest), serialization_format="skops", input_example=x[:2])
    return dest


def _env_without(tmp_path: Path, *packages: str) -> Path:
    """This venv less ``packages``: a venv of the same Python whose site-packages links every
    entry of ours but theirs (modules and dist-info), so imports and importlib.metadata agree."""
    import site
    import venv

    home = tmp_path / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    ours = Path(next(p for p in site.getsitepackages() if p.startswith(sys.prefix)))
    theirs = next((home / "lib").glob("python3*/site-packages"))
    for entry in ours.iterdir():
        name = entry.name.lower().split("-")[0].removesuffix(".py")
        if name not in packages and entry.name not in ("__pycache__",):
            (theirs / entry.name).symlink_to(entry)
    return home / "bin" / "python"


def test_a_skops_model_without_skops_stops_within_seconds_with_one_line_naming_it(tmp_path):
    """The issue's case: an MLflow sklearn model saved with skops, served where skops is
    missing, died with a traceback and "Worker failed to boot". Both engines now stop before
    any worker starts, exit code 3, one line naming skops and the fix."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skops", reason="saving a skops model needs skops")
    model = _skops_model(tmp_path / "skops-model")
    pinned = next(line for line in (model / "requirements.txt").read_text().splitlines()
                  if line.startswith("skops"))
    python = _env_without(tmp_path, "skops")
    # the environment really lacks skops, and MLflow really needs it for this model
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, sys, mlflow.pyfunc\n"
         "assert importlib.util.find_spec('skops') is None\n"
         f"mlflow.pyfunc.load_model({str(model)!r})"],
        capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode != 0 and "No module named 'skops'" in probe.stderr, probe.stderr
    cli = "import sys; from mldeploy.cli import main; sys.argv[0] = 'mldeploy'; main()"
    for engine in ("flask", "mlserver"):
        if engine == "mlserver" and importlib.util.find_spec("mlserver") is None:
            continue
        started = time.monotonic()
        proc = subprocess.run(
            [str(python), "-c", cli, "serve", "-m", str(model), "--port", str(free_port(3)),
             "--engine", engine],
            capture_output=True, text=True, timeout=120, check=False,
        )
        took = time.monotonic() - started
        assert proc.returncode == 3, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and pinned in errors[0], proc.stderr
        assert f"pip install '{pinned}'" in errors[0] and "--env-manager virtualenv" in errors[0]
        assert "Traceback" not in proc.stderr and "Worker failed to boot" not in proc.stderr
        assert took < 60, took  # seconds, on a loaded machine; the model is never loaded


# -- --env-manager virtualenv|uv: planning and the cache (the real builds: integration/) ----


def test_settings_travel_to_the_model_environment_unchanged():
    from mldeploy.container.model_env import settings_environment
    from mldeploy.container.settings import ServerSettings

    settings = ServerSettings.resolve(
        env={}, model_uri="/m", port=9000, workers=3, engine="mlserver", env_manager="uv",
        metrics="off", mlserver_max_batch_size=4, mlserver_max_batch_time=0.5, timeout=7.5)
    again = ServerSettings.resolve(env=settings_environment(settings))
    assert again == __import__("dataclasses").replace(settings, env_manager="local")


def test_the_environment_is_keyed_by_the_model_requirements(tmp_path, example_model,
                                                            monkeypatch):
    from mldeploy.container import model_env

    monkeypatch.setattr(model_env, "runtime_install_args",
                        lambda cache: (["-e", "/src/mldeploy"], "editable:/src/mldeploy"))
    model = _model(tmp_path, example_model, ["scikit-learn==1.9.1", "mlflow==3.17.2"])
    first = model_env.plan(model, "virtualenv", "flask", tmp_path / "cache")
    assert first == model_env.plan(model, "virtualenv", "flask", tmp_path / "cache")
    assert "mlflow-skinny==3.17.2" in first.requirements  # resolved as for images
    assert "prometheus_client>=0.20" in first.requirements  # mldeploy's runtime comes along
    assert first.key != model_env.plan(model, "uv", "flask", tmp_path / "cache").key
    (model / "requirements.txt").write_text("scikit-learn==1.9.0\nmlflow==3.17.2\n")
    assert first.key != model_env.plan(model, "virtualenv", "flask", tmp_path / "cache").key


def test_an_environment_is_built_once_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from mldeploy.container import model_env

    built = []

    def fake_build(plan, env_dir):
        built.append(plan.key)
        if plan.requirements == ("broken",):
            (env_dir / "half").mkdir(parents=True)
            raise model_env.EnvBuildError("installing the model's requirements failed: nope")
        (env_dir / "bin").mkdir(parents=True)

    monkeypatch.setattr(model_env, "_build", fake_build)
    plan = model_env.EnvPlan("virtualenv", ("six",), ("-e", "/src"), "editable:/src", "3.11")
    env = model_env.ensure_env(plan, tmp_path)
    assert env == tmp_path / "envs" / plan.key and (env / model_env.READY_MARKER).is_file()
    assert model_env.ensure_env(plan, tmp_path) == env and built == [plan.key]
    broken = model_env.EnvPlan("virtualenv", ("broken",), ("-e", "/src"), "editable:/src", "3.11")
    with pytest.raises(model_env.EnvBuildError, match="nope"):
        model_env.ensure_env(broken, tmp_path)
    assert not (tmp_path / "envs" / broken.key).exists()


def test_uv_missing_is_one_line_with_the_fix(monkeypatch):
    import builtins

    from mldeploy.container import model_env

    real_import = builtins.__import__

    def no_uv(name, *args, **kwargs):
        if name == "uv":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(model_env.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(builtins, "__import__", no_uv)
    with pytest.raises(model_env.EnvBuildError) as info:
        model_env._uv()
    assert "needs uv" in info.value.message and "pip install uv" in info.value.hint


def test_the_editable_install_stays_editable():
    from mldeploy.container.model_env import runtime_install_args

    if not any('"editable": true' in (d.read_text("direct_url.json") or "")
               for d in importlib.metadata.distributions(name="mldeploy")):
        pytest.skip("mldeploy is not an editable install here")
    args, ident = runtime_install_args(Path("/nonexistent"))
    assert args[0] == "-e" and Path(args[1], "pyproject.toml").is_file()
    assert ident == f"editable:{args[1]}"
