"""The Azure ML target
(``mldeploy deploy --target azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE``).

Files, as in every target: ``target.py`` the hooks the core calls, ``config.py`` the typed config,
``_client.py`` the connection (azure-identity's ``DefaultAzureCredential``, the cloud, the
``MLClient``) and the scoring call, ``_ops.py`` the SDK steps recorded in the transaction,
``_specs.py`` the endpoint/deployment entities (and their Azure ML YAML for ``--dry-run -o yaml``),
``_traffic.py`` weights as Azure stores them, ``_image.py`` the serving image and its push to ACR,
``errors.py`` SDK errors -> mldeploy errors, ``mlflow_plugin.py`` MLflow's deployments plugin,
``testing/`` a control-plane fake the real SDK talks to over https on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mldeploy.plugins.azureml.target import AzureMLTarget

# What the target's extra installs: checked when the target is first asked for, so the registry
# can name the extra; importing this package imports nothing else.
NEEDS: tuple[str, ...] = ("azure.ai.ml", "azure.identity")

__all__ = ["AzureMLTarget"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import importlib.util

    for dep in NEEDS:
        try:
            found = importlib.util.find_spec(dep) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ImportError(f"the azureml target needs {dep}", name=dep)
    return getattr(importlib.import_module(f"{__name__}.target"), name)
