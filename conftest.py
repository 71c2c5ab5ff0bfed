"""Fixtures shared by tests/ and integration/: small real MLflow models saved to disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE_MODEL = Path(__file__).resolve().parent / "src" / "mldeploy" / "examples" / "classifier"


@pytest.fixture(scope="session", autouse=True)
def mlflow_tracking_outside_the_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MLFLOW_TRACKING_URI -> a SQLite store in a session temp dir, for tests and the processes
    they start. Unset, MLflow 3 uses sqlite:///mlflow.db in the cwd (the repo) whenever anything
    reaches a tracking store without naming one; a user's own URI must not be written to either.
    Tests that need no tracking URI configured unset it themselves."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-tracking') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="session")
def example_model() -> Path:
    """The shipped scikit-learn classifier (20 double columns f0..f19)."""
    return EXAMPLE_MODEL


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _save_pyfunc(dest: Path, python_model: object, signature: object = None, **kw: object) -> Path:
    import mlflow.pyfunc

    if dest.exists():
        shutil.rmtree(dest)
    mlflow.pyfunc.save_model(
        str(dest), python_model=python_model, signature=signature, pip_requirements=[], **kw
    )
    return dest


@pytest.fixture(scope="session")
def mixed_model(models_dir: Path) -> Path:
    """A pyfunc model with a mixed-type column signature and a params schema.

    predict returns one dict per row: {"label": "<name>-<count*2>", "flag": not flag, "scale": p}
    where p is the ``scale`` param (default 1.0); it raises ValueError when name == "boom".
    """
    from mldeploy_test_models import MixedModel
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec("string", "name"),
                ColSpec("long", "count"),
                ColSpec("boolean", "flag"),
                ColSpec("double", "score", required=False),
            ]
        ),
        params=ParamSchema([ParamSpec("scale", "double", 1.0)]),
    )
    return _save_pyfunc(
        models_dir / "mixed", MixedModel(), signature, code_paths=[_test_models_file()]
    )


@pytest.fixture(scope="session")
def slow_model(models_dir: Path) -> Path:
    """No signature; sleeps ``sleep`` seconds, then burns CPU ``spin`` seconds (columns of the first
    row), and echoes the row count.
    Loading sleeps ``MLDEPLOY_TEST_LOAD_SLEEP`` seconds (read at load time, default 0)."""
    from mldeploy_test_models import SlowModel

    return _save_pyfunc(models_dir / "slow", SlowModel(), code_paths=[_test_models_file()])


@pytest.fixture(scope="session")
def broken_example_model(models_dir: Path, example_model: Path) -> Path:
    """The example model with a serving example the model cannot score (warm-up fails)."""
    dest = models_dir / "broken-example"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(example_model, dest)
    (dest / "serving_input_example.json").write_text(
        '{"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}}'
    )
    return dest


def _test_models_file() -> str:
    return str(Path(__file__).resolve().parent / "tests" / "mldeploy_test_models.py")


def pytest_configure(config: pytest.Config) -> None:
    # The model classes must be importable by name for MLflow to pickle them by reference.
    import sys

    tests_dir = str(Path(__file__).resolve().parent / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
