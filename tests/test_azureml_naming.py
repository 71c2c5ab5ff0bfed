"""The Azure model asset's name and version from the model URI (the SDK-driven flow against an
MLflow registry is in integration/test_azureml_registry.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("uri", "expected"), [
    ("models:/churn/3", ("churn", "3")),
    ("models:/churn/3/", ("churn", "3")),
    ("models:/churn@champion", ("churn", None)),
    ("models:/churn/latest", ("churn", None)),
    ("models:/churn/Production", ("churn", None)),
    ("models:/my churn!/2", ("my-churn", "2")),
    ("runs:/abc/model", ("ep", None)),
    ("/models/churn/3", ("ep", None)),
    ("s3://bucket/models:/churn/3", ("ep", None)),
])
def test_model_name_and_version_from_the_uri(uri, expected):
    pytest.importorskip("azure.ai.ml")
    from mldeploy.plugins.azureml._ops import model_name

    assert model_name("ep", uri) == expected



def test_autoscale_is_not_a_key():
    """Managed online endpoints autoscale through Azure Monitor autoscale settings, another API
    than azure-ai-ml's: there is no autoscale key, so one is refused like any unknown key."""
    from mldeploy.config import build_config
    from mldeploy.errors import ConfigError
    from mldeploy.plugins.azureml.config import AzureMLConfig

    with pytest.raises(ConfigError):
        build_config(AzureMLConfig, {"autoscale": {"max_instances": "5"}})
