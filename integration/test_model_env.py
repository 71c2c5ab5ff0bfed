"""`mldeploy serve --env-manager uv|virtualenv`: the model's own environment, really built
(from PyPI or the installer's cache), then reused.

The environment holds mldeploy's whole runtime (mlflow-skinny, pandas, numpy, flask, gunicorn,
...), so a build downloads ~300 MB of wheels when no cache has them: uv runs by default when it
is installed (the ``uv`` package, in the dev extra: 1.5-2 minutes cold on this loaded machine);
pip (``virtualenv``) took 4.5 minutes with a cold cache and is opt-in:
``MLDEPLOY_TEST_ENV_BUILD=1``.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
import requests
from test_serve import serve  # noqa: I001  (sibling test module)

pytestmark = pytest.mark.integration


def _uv_available() -> bool:
    from mldeploy.container.model_env import EnvBuildError, _uv

    try:
        _uv()
    except EnvBuildError:
        return False
    return True


@pytest.mark.parametrize("manager", [
    pytest.param("uv", marks=pytest.mark.skipif(not _uv_available(), reason="uv not installed")),
    pytest.param("virtualenv", marks=pytest.mark.skipif(
        os.environ.get("MLDEPLOY_TEST_ENV_BUILD") != "1",
        reason="slow (pip builds the whole runtime): set MLDEPLOY_TEST_ENV_BUILD=1")),
])
def test_serve_builds_the_model_environment_once_and_serves_from_it(
        tmp_path, slow_model, manager):
    model = tmp_path / "model"
    shutil.copytree(slow_model, model)
    with open(model / "requirements.txt", "a") as reqs:  # something this env may lack
        reqs.write("\nsix\n")  # MLflow writes no newline after the last line
    cache = tmp_path / "cache"
    env = {"MLDEPLOY_CACHE_DIR": str(cache)}
    timings = []
    for _ in range(2):
        started = time.monotonic()
        with serve(tmp_path, model, "--workers", "1", "--env-manager", manager,
                   env=env) as server:
            server.wait_ready(1500)
            timings.append(time.monotonic() - started)
            answer = requests.post(f"{server.url}/invocations", timeout=120,  # loaded CI
                                   json={"dataframe_split": {"columns": ["x"],
                                                             "data": [[1], [2]]}})
            assert answer.status_code == 200 and answer.json() == {"predictions": [2]}
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            assert "mldeploy_model_ready 1.0" in metrics
        assert server.proc.returncode == 0, server.log.read_text()[-2000:]
    envs = [p for p in (cache / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1 and (envs[0] / "bin" / "python").is_file()
    log = server.log.read_text()
    # the second run reused it
    assert f"serving from the model's environment {envs[0]} (cached)" in log
    assert "building" not in log
    print(f"{manager}: first start {timings[0]:.1f} s (build), second {timings[1]:.1f} s")
