"""Packaging and import contract: one namespace, mapped folders, nothing at import time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_editable_install_maps_container_and_plugins_into_the_namespace(tmp_path):
    out = _run(
        "import mldeploy, mldeploy.container.protocol as p, mldeploy.plugins as q, docker;"
        "print(p.__file__); print(q.__file__); print(docker.__file__)",
        cwd=tmp_path,  # not the repo: the import must come from the installed mapping
    )
    protocol_file, plugins_file, docker_file = out.splitlines()
    assert Path(protocol_file) == ROOT / "container" / "protocol.py"
    assert Path(plugins_file) == ROOT / "plugins" / "__init__.py"
    # plugins/ is never on sys.path: `import docker` is the SDK, not a plugin package
    assert "site-packages" in docker_file


def test_import_does_nothing_heavy(tmp_path):
    out = _run(
        "import sys, mldeploy;"
        "heavy = [m for m in ('mlflow', 'flask', 'gunicorn', 'boto3', 'pandas', 'docker',"
        " 'mldeploy.plugins', 'mldeploy.api', 'mldeploy.container') if m in sys.modules];"
        "print(heavy)",
        cwd=tmp_path,
    )
    assert out == "[]"


def test_lazy_public_api(tmp_path):
    out = _run("import mldeploy; print(callable(mldeploy.deploy), mldeploy.example_model_path())",
               cwd=tmp_path)
    assert out == f"True {ROOT / 'src' / 'mldeploy' / 'examples' / 'classifier'}"
    missing = _run("import mldeploy; print([n for n in mldeploy.__all__ "
                   "if getattr(mldeploy, n, None) is None])", cwd=tmp_path)
    assert missing == "[]"
    with pytest.raises(AttributeError):
        import mldeploy

        mldeploy.no_such_thing  # noqa: B018


def test_wheel_contains_all_three_roots_and_the_example_model(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("mldeploy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "mldeploy/__init__.py",
        "mldeploy/errors.py",
        "mldeploy/container/protocol.py",
        "mldeploy/container/engines/flask.py",
        "mldeploy/plugins/__init__.py",
        "mldeploy/examples/classifier/MLmodel",
        "mldeploy/examples/classifier/model.pkl",
        "mldeploy/examples/classifier/serving_input_example.json",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("plugins/", "container/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mldeploy = mldeploy.cli:main" in text and "[mldeploy.targets]" in text


def test_example_model_is_small():
    size = sum(p.stat().st_size for p in (ROOT / "src/mldeploy/examples").rglob("*") if p.is_file())
    assert size < 300 * 1024
