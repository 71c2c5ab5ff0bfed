"""mldeploy: put an MLflow model behind a production endpoint on any target.

Nothing happens at import time: the public functions below are imported on first use.

    mldeploy.deploy("sagemaker", name="churn", model_uri="models:/churn@prod", mode="replace")
    mldeploy.invoke("sagemaker", name="churn", data=frame)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "deploy": ("mldeploy.api", "deploy"),
    "delete": ("mldeploy.api", "delete"),
    "get": ("mldeploy.api", "get"),
    "list": ("mldeploy.api", "list_deployments"),
    "list_deployments": ("mldeploy.api", "list_deployments"),
    "invoke": ("mldeploy.api", "invoke"),
    "traffic": ("mldeploy.api", "traffic"),
    "build_docker": ("mldeploy.container.image", "build_docker"),
    "generate_dockerfile": ("mldeploy.container.image", "generate_dockerfile"),
    "resolve_model_uri": ("mldeploy.model_uri", "resolve_model_uri"),
    "materialize": ("mldeploy.model_uri", "materialize"),
    "predict": ("mldeploy.batch", "predict"),
    "get_target": ("mldeploy.registry", "get_target"),
    "available_targets": ("mldeploy.registry", "available_targets"),
    "Target": ("mldeploy.target", "Target"),
    "Deployment": ("mldeploy.target", "Deployment"),
    "Prediction": ("mldeploy.target", "Prediction"),
    "Plan": ("mldeploy.target", "Plan"),
    "DeployMode": ("mldeploy.target", "DeployMode"),
    "Status": ("mldeploy.target", "Status"),
}

__all__ = ["__version__", "example_model_path", *_LAZY]


def example_model_path() -> str:
    """Path of the small scikit-learn classifier shipped with mldeploy (20 float features)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "examples" / "classifier")


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mldeploy' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
