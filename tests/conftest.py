"""Fixtures shared by several test modules of tests/ (the model fixtures are in the root
conftest.py)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def cluster():
    """A fake Kubernetes cluster (kmock API server + controllers), 20x faster than real time."""
    from mldeploy.plugins.kubernetes.testing import FakeCluster

    with FakeCluster(time_scale=0.05) as c:
        yield c


@pytest.fixture
def model2(tmp_path):
    """The example model with one more file, saved again (a new ``model_uuid``): another model
    version."""
    import re

    from mldeploy.testing.conformance import example_model_dir

    dst = tmp_path / "model2"
    shutil.copytree(example_model_dir(), dst)
    (dst / "NOTES.txt").write_text("second model\n")
    mlmodel = dst / "MLmodel"
    uuid = "model_uuid: 5ec0nd00000000000000000000000002"
    mlmodel.write_text(re.sub(r"(?m)^model_uuid: .*$", uuid, mlmodel.read_text()))
    return str(dst)


@pytest.fixture(scope="module")
def clf(example_model):
    """The example model loaded as the server loads it (tests of the scoring protocol)."""
    from mldeploy.container.loader import load_model

    return load_model(str(example_model))


@pytest.fixture(scope="module")
def mixed(mixed_model):
    """The mixed-type model, loaded as the server loads it."""
    from mldeploy.container.loader import load_model

    return load_model(str(mixed_model))
