"""The endpoint and deployment as azure-ai-ml entities, built from the config (no Azure call):
``create`` sends them, ``--dry-run`` prints them as Azure ML YAML (``-o yaml``)."""

from __future__ import annotations

from typing import Any

import mldeploy
from mldeploy.container.settings import ENV_NAMES
from mldeploy.plugins.azureml._client import ENDPOINT_TAG, MANAGED_BY, MODEL_URI, VERSION
from mldeploy.plugins.azureml.config import AzureMLConfig, EnvironmentKind, ProbeSettings
from mldeploy.redact import redact_uri

PORT = 8080
INFERENCE_CONFIG = {
    "liveness_route": {"port": PORT, "path": "/ping"},
    "readiness_route": {"port": PORT, "path": "/ping"},
    "scoring_route": {"port": PORT, "path": "/invocations"},
}
SEQ = "mldeploy.seq"  # the order deployments were made in (variants are listed in it)
NO_CODE_NOTE = ("Azure's curated MLflow image installs the model's packages (conda.yaml) when "
                "each container starts: slower starts, and it needs egress to a package index")


def _quiet_sdk_logs() -> None:
    """azure-ai-ml logs "This is an experimental class" warnings for its own internal schemas."""
    import logging

    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)


def endpoint(cfg: AzureMLConfig, name: str) -> Any:
    _quiet_sdk_logs()
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    tags = {**cfg.tags, MANAGED_BY: "mldeploy", VERSION: mldeploy.__version__}
    return ManagedOnlineEndpoint(name=name, auth_mode=cfg.auth_mode.value, tags=tags,
                                 description=f"{name}, deployed by mldeploy")


def _probe(p: ProbeSettings) -> Any:
    from azure.ai.ml.entities import ProbeSettings as AzProbe

    return AzProbe(initial_delay=p.initial_delay, period=p.period, timeout=p.timeout,
                   failure_threshold=p.failure_threshold, success_threshold=p.success_threshold)


def environment(cfg: AzureMLConfig, image: str) -> Any:
    from azure.ai.ml.entities import Environment

    return Environment(image=image, inference_config=INFERENCE_CONFIG,
                       description="mldeploy serving image (dependencies baked in)")


def deployment(cfg: AzureMLConfig, endpoint_name: str, name: str, model: Any, image: str | None,
               model_uri: str, seq: int) -> Any:
    _quiet_sdk_logs()
    from azure.ai.ml.entities import ManagedOnlineDeployment, OnlineRequestSettings

    env = None
    env_vars = dict(cfg.env)
    if cfg.environment is EnvironmentKind.CUSTOM:
        env = environment(cfg, image or "")
        env_vars.setdefault(ENV_NAMES["port"], str(PORT))  # the container's own setting
    tags = {**cfg.tags, MANAGED_BY: "mldeploy", VERSION: mldeploy.__version__,
            MODEL_URI: redact_uri(model_uri), ENDPOINT_TAG: endpoint_name, SEQ: str(seq)}
    return ManagedOnlineDeployment(
        name=name, endpoint_name=endpoint_name, model=model, environment=env,
        instance_type=cfg.instance_type, instance_count=cfg.instance_count,
        request_settings=OnlineRequestSettings(
            request_timeout_ms=cfg.request_timeout_ms,
            max_concurrent_requests_per_instance=cfg.max_concurrent_requests_per_instance,
            max_queue_wait_ms=cfg.max_queue_wait_ms),
        liveness_probe=_probe(cfg.liveness_probe), readiness_probe=_probe(cfg.readiness_probe),
        environment_variables=env_vars or None, tags=tags)


def model(cfg: AzureMLConfig, name: str, version: str, path: str, model_uri: str,
          endpoint_name: str) -> Any:
    _quiet_sdk_logs()
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    return Model(name=name, version=version, path=path, type=AssetTypes.MLFLOW_MODEL,
                 description=f"registered by mldeploy for {endpoint_name}",
                 tags={MANAGED_BY: "mldeploy", VERSION: mldeploy.__version__,
                       MODEL_URI: redact_uri(model_uri), ENDPOINT_TAG: endpoint_name})


def as_yaml_dict(entity: Any, schema: str) -> dict[str, Any]:
    """An entity as the Azure ML CLI v2 YAML it would be written as."""
    import json

    doc = {"$schema": f"https://azuremlschemas.azureedge.net/latest/{schema}.schema.json"}
    plain = json.loads(json.dumps(entity._to_dict(), default=str))  # OrderedDicts -> dicts
    doc.update({k: v for k, v in plain.items() if v not in (None, {}, [])})
    return doc


__all__ = ["INFERENCE_CONFIG", "NO_CODE_NOTE", "PORT", "SEQ", "as_yaml_dict", "deployment",
           "endpoint", "environment", "model"]
