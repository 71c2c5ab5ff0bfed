"""Azure ML target configuration: every key, its type, default and limits in one place.

Keys are the ``-C key=value`` names (``-C instance_type=Standard_DS3_v2 -C cloud=AzureChinaCloud``);
mappings take JSON or dotted keys (``-C env.LOG_LEVEL=debug``), lists commas or JSON
(``-C traffic_steps=10,50,100``). No JSON config file is needed. Credentials are never keys here:
they come from azure-identity's ``DefaultAzureCredential``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from mldeploy.errors import ConfigError
from mldeploy.images import BuildOptions

# Azure ML online endpoint names: 3-32, a letter first, letters, digits and '-'.
ENDPOINT_NAME = r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Cloud(str, enum.Enum):
    """The sovereign clouds azure-ai-ml knows by name; private clouds come from the SDK's own
    ``ARM_CLOUD_METADATA_URL`` mechanism (then leave ``cloud`` unset)."""

    AZURE = "AzureCloud"
    CHINA = "AzureChinaCloud"
    US_GOVERNMENT = "AzureUSGovernment"


class AuthMode(str, enum.Enum):
    KEY = "key"
    AML_TOKEN = "aml_token"


class EnvironmentKind(str, enum.Enum):
    """custom: mldeploy's serving image as a custom container (dependencies baked in, nothing
    installed at start). azureml-mlflow: Azure's no-code MLflow deployment (Azure's curated image
    installs the model's packages when the container starts)."""

    CUSTOM = "custom"
    AZUREML_MLFLOW = "azureml-mlflow"


@dataclass(frozen=True)
class ProbeSettings:
    """A liveness or readiness probe (Azure's ``ProbeSettings``). The defaults are tuned for
    models that load slowly: Azure's own (10 s initial delay, 30 failures) restart a container
    that is still loading a large model."""

    initial_delay: int = field(default=30, metadata={"min": 1, "max": 3600})
    period: int = field(default=10, metadata={"min": 1, "max": 600})
    timeout: int = field(default=5, metadata={"min": 1, "max": 600})
    failure_threshold: int = field(default=60, metadata={"min": 1, "max": 1000})
    success_threshold: int = field(default=1, metadata={"min": 1, "max": 1})


@dataclass(frozen=True)
class AzureMLConfig:
    subscription_id: str | None = field(default=None, metadata={
        "help": "subscription (or the spec azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE)"})
    resource_group: str | None = None
    workspace: str | None = None
    cloud: Cloud | None = field(default=None, metadata={
        "help": "AzureCloud, AzureChinaCloud or AzureUSGovernment; unset: AzureCloud, or the "
                "cloud ARM_CLOUD_METADATA_URL describes"})
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = field(default=1, metadata={"min": 1, "max": 100})
    environment: EnvironmentKind = field(default=EnvironmentKind.CUSTOM, metadata={
        "help": "custom: mldeploy's image; azureml-mlflow: Azure's no-code MLflow image"})
    image: str | None = field(default=None, metadata={
        "help": "an existing serving image to run (else the image builder builds the model's)"})
    registry: str | None = field(default=None, metadata={
        "help": "repository for built images (default: the workspace's container registry)"})
    build: BuildOptions | None = field(default=None, metadata={
        "help": "image builder options, e.g. -C build.engine=mlserver (the same on every target)"})
    auth_mode: AuthMode = AuthMode.KEY
    request_timeout_ms: int = field(default=60000, metadata={"min": 1, "max": 180000})
    max_concurrent_requests_per_instance: int = field(default=1, metadata={"min": 1, "max": 1000})
    max_queue_wait_ms: int = field(default=500, metadata={"min": 1, "max": 600000})
    liveness_probe: ProbeSettings = field(default_factory=ProbeSettings)
    readiness_probe: ProbeSettings = field(default_factory=lambda: ProbeSettings(
        initial_delay=10, period=5, failure_threshold=30))
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    mirror_percent: int = field(default=0, metadata={
        "min": 0, "max": 50, "help": "replace: mirror this share of live traffic to the new "
                                     "deployment first (Azure allows at most 50)"})
    mirror_seconds: float = field(default=30.0, metadata={"min": 0.0, "max": 86400.0})
    traffic_steps: list[int] = field(default_factory=lambda: [100], metadata={
        "help": "replace: the new deployment's share after each step, e.g. 10,50,100"})
    step_wait_seconds: float = field(default=0.0, metadata={"min": 0.0, "max": 86400.0})
    variant_name: str | None = field(default=None, metadata={
        "help": "the new deployment's name (default: the next free of blue, green, gold...)"})
    add_percent: int = field(default=10, metadata={
        "min": 0, "max": 100, "help": "add: the new deployment's initial share of traffic"})
    timeout_seconds: float = field(default=1800.0, metadata={"min": 0.1})
    poll_interval_seconds: float = field(default=5.0, metadata={"min": 0.0, "max": 300.0})
    log_lines: int = field(default=30, metadata={"min": 0, "max": 5000})

    def validate(self) -> None:
        steps = self.traffic_steps
        if not steps or any(not 1 <= s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ConfigError(f"traffic_steps={','.join(map(str, steps))} must rise from 1 to 100",
                              hint="e.g. -C traffic_steps=10,50,100")
        if steps[-1] != 100:
            raise ConfigError("the last of traffic_steps must be 100 (the new model takes all "
                              "traffic before the old one is removed)",
                              hint=f"e.g. -C traffic_steps={','.join(map(str, steps))},100")
        if self.environment is EnvironmentKind.AZUREML_MLFLOW and self.image:
            raise ConfigError("environment=azureml-mlflow runs Azure's image, not -C image",
                              hint="drop one of the two")
        if self.variant_name is not None and not re.fullmatch(
                r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]", self.variant_name):
            raise ConfigError(f"variant_name={self.variant_name!r} is not a deployment name",
                              hint="3-32 letters, digits and '-', starting with a letter")
        for key in self.env:
            if not _ENV_KEY.match(key):
                raise ConfigError(f"env key {key!r} is not a valid environment variable name")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.instance_type):
            raise ConfigError(f"instance_type={self.instance_type!r} is not a VM size",
                              hint="e.g. Standard_DS3_v2")


__all__ = ["AuthMode", "AzureMLConfig", "Cloud", "ENDPOINT_NAME", "EnvironmentKind",
           "ProbeSettings"]
