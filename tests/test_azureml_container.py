"""The serving container under Azure ML's launch conventions: the model Azure mounts under
``AZUREML_MODEL_DIR`` is found (at it or one folder down), SageMaker's precedence is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from mldeploy.container.settings import DEFAULT_MODEL_DIR, ServerSettings, SettingsError


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "MLmodel").write_text("flavors: {}\n")
    return path


def test_a_folder_registered_model_is_found_one_level_down(tmp_path):
    mount = tmp_path / "azureml-models" / "ep" / "3"
    model = _model(mount / "model")
    got = ServerSettings.resolve({"AZUREML_MODEL_DIR": str(mount)})
    assert got.model_uri == str(model)


def test_a_model_directly_at_the_mount_is_found(tmp_path):
    mount = _model(tmp_path / "m")
    assert ServerSettings.resolve({"AZUREML_MODEL_DIR": str(mount)}).model_uri == str(mount)


def test_explicit_and_mldeploy_model_uri_win_over_azure(tmp_path):
    env = {"AZUREML_MODEL_DIR": str(tmp_path / "nothing"), "MLDEPLOY_MODEL_URI": "/x"}
    assert ServerSettings.resolve(env).model_uri == "/x"
    assert ServerSettings.resolve(env, model_uri="/y").model_uri == "/y"


def test_sagemaker_default_is_unchanged_without_azure():
    assert ServerSettings.resolve({}).model_uri == DEFAULT_MODEL_DIR


@pytest.mark.parametrize("layout", ["empty", "two", "missing"])
def test_no_or_several_models_is_a_clear_error_naming_the_path(tmp_path, layout):
    mount = tmp_path / "mount"
    if layout != "missing":
        mount.mkdir()
        (mount / "notes.txt").write_text("not a model")
    if layout == "two":
        _model(mount / "a")
        _model(mount / "b")
    with pytest.raises(SettingsError) as info:
        ServerSettings.resolve({"AZUREML_MODEL_DIR": str(mount)})
    message = str(info.value)
    assert f"AZUREML_MODEL_DIR={mount}" in message
    if layout == "two":
        assert "2 MLflow models" in message and "MLDEPLOY_MODEL_URI" in message
    if layout == "empty":
        assert "no MLflow model" in message


def test_the_startup_error_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    from mldeploy.container.__main__ import main

    monkeypatch.delenv("MLDEPLOY_MODEL_URI", raising=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    code = main(["serve", "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no MLflow model" in err and str(tmp_path) in err
    assert "Traceback" not in err
