"""Kubernetes target configuration: every key, its type, default and limits in one place.

Checked before any API call (``validate``): names, quantities, replica bounds, rollout settings.
Keys are the ``-C key=value`` names (``-C max_replicas=6 -C cpu_request=1``); mappings take JSON
(``-C 'env={"LOG_LEVEL": "debug"}'``) or dotted keys (``-C env.LOG_LEVEL=debug``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from mldeploy.errors import ConfigError
from mldeploy.images import BuildOptions

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Service names are DNS-1035 labels: they must start with a letter.
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PERCENT_OR_INT = re.compile(r"^([0-9]+%?)$")


class ServiceType(str, enum.Enum):
    CLUSTER_IP = "ClusterIP"
    LOAD_BALANCER = "LoadBalancer"
    NODE_PORT = "NodePort"


class PullPolicy(str, enum.Enum):
    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"
    NEVER = "Never"


class ModelSource(str, enum.Enum):
    """Where the serving container finds the model: baked into the image (the image builder's
    default) or loaded at start from the model URI (``MLDEPLOY_MODEL_URI``, for a generic image;
    the URI must be reachable from the cluster: ``models:/``, ``runs:/``, ``s3://``...)."""

    IMAGE = "image"
    URI = "uri"


class Spread(str, enum.Enum):
    """How a variant's pods spread over nodes (``topologySpreadConstraints`` on
    ``kubernetes.io/hostname``, at most one pod more on one node than another): ``required``
    (DoNotSchedule: with a PDB a node drain never takes two replicas; cordoned and tainted nodes
    do not count), ``preferred`` (ScheduleAnyway) or ``off``."""

    REQUIRED = "required"
    PREFERRED = "preferred"
    OFF = "off"


class Output(str, enum.Enum):
    """What ``--dry-run`` prints: plain Kubernetes objects, or a KServe InferenceService."""

    KUBERNETES = "kubernetes"
    KSERVE = "kserve"


def _quantity(value: str | None, key: str) -> None:
    if value is None:
        return
    from mldeploy.plugins.kubernetes._checks import parse_quantity

    try:
        ok = parse_quantity(value) >= 0 and value.strip()[:1] not in "+-"
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"config {key}={value!r} is not a Kubernetes quantity",
                          hint="e.g. 500m or 2 for CPU, 512Mi or 2Gi for memory")


@dataclass(frozen=True)
class KubernetesConfig:
    context: str | None = field(default=None, metadata={
        "help": "kubeconfig context (or the spec kubernetes:/CONTEXT/NAMESPACE); default: current"})
    namespace: str | None = field(default=None, metadata={
        "help": "namespace (default: the context's, else 'default')"})
    kubeconfig: str | None = field(default=None, metadata={
        "help": "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster config)"})
    image: str | None = field(default=None, metadata={
        "help": "serving image to run; default: build one with the image builder and push it"})
    registry: str | None = field(default=None, metadata={
        "help": "repository for built images, e.g. ghcr.io/me/models (needed without image)"})
    build: BuildOptions | None = field(default=None, metadata={
        "help": "image builder options when no image is given, e.g. -C build.engine=mlserver "
                "(the same build.* keys on every target)"})
    model_source: ModelSource = field(default=ModelSource.IMAGE, metadata={
        "help": "image: the model is in the image; uri: the container loads the model URI"})
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    image_pull_secrets: list[str] = field(default_factory=list)
    service_account: str | None = None
    min_replicas: int = field(default=2, metadata={"min": 1, "max": 1000})
    max_replicas: int = field(default=4, metadata={"min": 1, "max": 1000})
    autoscale: bool = field(default=True, metadata={
        "help": "create an autoscaling/v2 HorizontalPodAutoscaler (else min_replicas fixed)"})
    target_cpu_utilization: int = field(default=70, metadata={"min": 1, "max": 1000})
    cpu_request: str | None = "500m"
    cpu_limit: str | None = None
    memory_request: str | None = "1Gi"
    memory_limit: str | None = "2Gi"
    gpus: int = field(default=0, metadata={"min": 0, "max": 64, "help": "nvidia.com/gpu limit"})
    workers: int | None = field(default=None, metadata={
        "min": 1, "max": 64, "help": "server workers per pod (default: CPU request, at least 1)"})
    port: int = field(default=80, metadata={"min": 1, "max": 65535, "help": "Service port"})
    service_type: ServiceType = ServiceType.CLUSTER_IP
    pdb: bool = field(default=True, metadata={"help": "create a PodDisruptionBudget"})
    pdb_max_unavailable: int = field(default=1, metadata={"min": 1})
    spread: Spread = field(default=Spread.REQUIRED, metadata={
        "help": "spread pods over nodes: required (no two on a node while another node has "
                "fewer), preferred, or off"})
    startup_timeout_seconds: int = field(default=300, metadata={
        "min": 10, "max": 3600, "help": "how long the startup probe waits for the model to load"})
    drain_seconds: int = field(default=25, metadata={
        "min": 1, "max": 600, "help": "the server's graceful drain after SIGTERM"})
    pre_stop_seconds: int = field(default=5, metadata={
        "min": 0, "max": 60, "help": "sleep before SIGTERM so endpoints are removed first"})
    max_surge: str = field(default="25%", metadata={"help": "extra pods during a rollout"})
    progress_deadline_seconds: int = field(default=600, metadata={"min": 1, "max": 86400})
    timeout_seconds: float = field(default=900.0, metadata={
        "min": 0.1, "help": "how long create/replace/add wait for the rollout"})
    poll_interval_seconds: float = field(default=2.0, metadata={"min": 0.0, "max": 60.0})
    canary_weight: float = field(default=0.1, metadata={
        "min": 0.01, "max": 0.99, "help": "share of pods (so of traffic) add gives the new model"})
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    writable_paths: list[str] = field(default_factory=list, metadata={
        "help": "extra writable directories (emptyDir) besides /tmp"})
    log_lines: int = field(default=20, metadata={"min": 0, "max": 1000})
    output: Output = field(default=Output.KUBERNETES, metadata={
        "help": "kserve: --dry-run prints a KServe InferenceService instead"})

    def validate(self) -> None:
        if self.namespace is not None and not (DNS_LABEL.match(self.namespace)
                                               and len(self.namespace) <= 63):
            raise ConfigError(f"namespace {self.namespace!r} is not a valid namespace name",
                              hint="lowercase letters, digits and '-', at most 63")
        if self.min_replicas > self.max_replicas:
            raise ConfigError(f"min_replicas ({self.min_replicas}) exceeds max_replicas "
                              f"({self.max_replicas})")
        for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            _quantity(getattr(self, key), key)
        if self.autoscale and self.cpu_request is None:
            raise ConfigError("autoscale needs cpu_request (the HPA's utilisation is relative "
                              "to it)", hint="set -C cpu_request=500m or -C autoscale=false")
        if not PERCENT_OR_INT.match(self.max_surge) or self.max_surge in ("0", "0%"):
            raise ConfigError(f"max_surge={self.max_surge!r} must be a positive count or percent",
                              hint="with maxUnavailable 0 a rollout needs room for new pods")
        if self.max_surge.endswith("%") and int(self.max_surge[:-1]) > 100:
            raise ConfigError(f"max_surge={self.max_surge!r} is over 100%")
        for path in self.writable_paths:
            if not path.startswith("/") or path in ("/", "/tmp") or "\n" in path:
                raise ConfigError(f"writable path {path!r} must be an absolute directory "
                                  "other than / and /tmp")
        for secret in self.image_pull_secrets:
            if not DNS_LABEL.match(secret.replace(".", "-")):
                raise ConfigError(f"image_pull_secrets entry {secret!r} is not a secret name")
        for key in self.env:
            if not re.match(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", key):
                raise ConfigError(f"env key {key!r} is not a valid environment variable name")


__all__ = ["KubernetesConfig", "ModelSource", "Output", "PullPolicy", "ServiceType", "Spread"]
