"""The objects the Kubernetes target creates, as plain wire-form dicts (camelCase, what the API
server receives and ``kubectl apply -f`` reads). Pure functions: no client, no I/O.

For a deployment ``NAME`` in ``NAMESPACE``:

==========================  ==================================================================
Deployment ``NAME``         the stable variant: the image's ``serve`` on port 8080, startup /
                            readiness (``/ping``) / liveness (``/health``) probes, requests and
                            limits, non-root with a read-only root filesystem and emptyDir
                            writable paths, preStop sleep + grace period covering the server's
                            drain, RollingUpdate with maxUnavailable 0
Deployment ``NAME-canary``  only after ``add``: the same, another model, a fixed number of
                            replicas (the share asked for in an annotation)
Service ``NAME``            selects the pods of both variants (traffic follows the pod counts)
HPA ``NAME``                autoscaling/v2 on CPU utilisation of the stable Deployment
PDB ``NAME``                policy/v1, maxUnavailable across both variants
==========================  ==================================================================

GitOps-safe: with an HPA the stable Deployment has no ``spec.replicas`` (the HPA owns the count;
a ``replicas`` in a manifest makes Argo CD or Flux reset the HPA's count on every sync), and
pods spread over nodes (``topologySpreadConstraints`` on ``kubernetes.io/hostname``, pods of the
same revision only) so the PDB's ``maxUnavailable`` means a node drain never takes two replicas
at once.

Every object carries ``app.kubernetes.io/managed-by: mldeploy`` and ``instance: NAME``; delete
removes exactly the objects with those labels. ``app.kubernetes.io/version`` is the model's
version (the registry version, alias or run, else the MLmodel's run or uuid) and
``mldeploy.io/model-digest`` the content digest of its files; the ``mldeploy.io/model-uri``
annotation is a URI that resolves from anywhere (a relative local path made absolute).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.plugins.kubernetes.config import KubernetesConfig, ModelSource, Spread
from mldeploy.redact import redact_uri

CONTAINER_PORT = 8080  # the serving container's contract (SAGEMAKER_BIND_TO_PORT)
CONTAINER_NAME = "model"
APP_UID = 10001  # the image builder's user
PROBE_PERIOD = 5

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
COMPONENT = "app.kubernetes.io/component"
VARIANT = "mldeploy.io/variant"
MODEL_URI = "mldeploy.io/model-uri"
MODEL_DIGEST = "mldeploy.io/model-digest"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
TEMPLATE_HASH = "pod-template-hash"  # the Deployment controller's label of one revision's pods
IMAGE = "mldeploy.io/image"
CANARY_WEIGHT = "mldeploy.io/canary-weight"  # the share add/traffic sized the canary for
STABLE, CANARY = "stable", "canary"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Model:
    """The model one variant serves: its URI, the label-safe version, the image to run and the
    content digest of its files (None: not known, e.g. a remote model run from a given image)."""

    uri: str
    version: str
    image: str
    digest: str | None = None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def resolvable_uri(uri: str) -> str:
    """The model URI as one that resolves wherever it is read, not only in the directory it was
    typed in: a relative or ``~`` path (bare or ``file:``) made absolute and normalised, in the
    form given (``file://`` stays ``file://``); other URIs (``models:/``, ``s3://``...) kept."""
    from pathlib import Path
    from urllib.parse import urlparse

    if not uri or re.search(r"\s|\w://", uri.removeprefix("file://")):
        return uri  # not a path (text with spaces, a URL inside): as given, to be redacted
    if uri.startswith("file:"):
        if uri.startswith("file://") and urlparse(uri).netloc not in ("", "localhost"):
            return uri  # file://HOST/... or user info: not this machine's path to rewrite
        path = uri.removeprefix("file://") if uri.startswith("file://") else uri[5:]
        return Path(path).expanduser().resolve().as_uri() if path else uri
    if _SCHEME.match(uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
        return uri
    return str(Path(uri).expanduser().resolve())


def scrub_uri(uri: str) -> str:
    """The model URI for an annotation: resolvable (:func:`resolvable_uri`), credentials masked
    by the one redaction."""
    return redact_uri(resolvable_uri(uri))


def label_value(text: str) -> str:
    """``text`` made into a valid label value (at most 63, alphanumeric at both ends)."""
    value = re.sub(r"[^-A-Za-z0-9_.]+", "-", text)[:63].strip("-_.")
    return value if _LABEL_VALUE.match(value) else "unknown"


def model_version(uri: str, facts: Any = None) -> str:
    """The version label of a model - the model's own, never a content hash (that has its own
    label, :func:`digest_label`): ``models:/n/3`` -> ``3``, ``models:/n@champion`` ->
    ``champion``, ``runs:/ID/path`` -> the run id's first 12 characters; else, from the model's
    ``MLmodel`` (``facts``: :class:`mldeploy.container.image.requirements.ModelFacts`), its run
    id's or its ``model_uuid``'s first 12 characters; else the last path segment."""
    m = re.match(r"^models:/[^/@]+(?:/(?P<v>[^/]+)|@(?P<a>[^/]+))", uri)
    if m:
        return label_value(m["v"] or m["a"])
    m = re.match(r"^runs:/(?P<run>[^/]+)", uri)
    if m:
        return label_value(m["run"][:12])
    for known in (getattr(facts, "run_id", None), getattr(facts, "model_uuid", None)):
        if known:
            return label_value(str(known)[:12])
    return label_value(uri.rstrip("/").rsplit("/", 1)[-1] or "model")


def digest_label(digest: str) -> str:
    """The content digest as a label value: its hex digits, at most 63."""
    return label_value(digest.split(":")[-1][:63])


def selector(name: str, variant: str | None = None) -> dict[str, str]:
    """The labels a Deployment (with ``variant``) or the Service/PDB (without) select on."""
    labels = {INSTANCE: name, MANAGED_BY: "mldeploy", COMPONENT: "model-server"}
    if variant:
        labels[VARIANT] = variant
    return labels


def labels(cfg: KubernetesConfig, name: str, variant: str | None = None,
           model: Model | None = None) -> dict[str, str]:
    out = {**cfg.labels, NAME: name, **selector(name, variant)}
    if model is not None:
        out[VERSION] = model.version
        if model.digest:
            out[MODEL_DIGEST] = digest_label(model.digest)
    return out


def deployment_name(name: str, variant: str) -> str:
    return name if variant == STABLE else f"{name}-{variant}"


def _meta(cfg: KubernetesConfig, name: str, namespace: str, labels_: Mapping[str, str],
          annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels_)}
    ann = {**cfg.annotations, **(annotations or {})}
    if ann:
        meta["annotations"] = ann
    return meta


def _resources(cfg: KubernetesConfig) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cfg.cpu_request), ("memory", cfg.memory_request)) if v}
    limits: dict[str, Any] = {k: v for k, v in (("cpu", cfg.cpu_limit),
                                                ("memory", cfg.memory_limit)) if v}
    if cfg.gpus:
        limits["nvidia.com/gpu"] = str(cfg.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def cpu_cores(quantity: str | None) -> float:
    if not quantity:
        return 1.0
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _env(cfg: KubernetesConfig, model: Model) -> list[dict[str, str]]:
    workers = cfg.workers or max(1, math.ceil(cpu_cores(cfg.cpu_request or cfg.cpu_limit)))
    env = {
        "SAGEMAKER_BIND_TO_PORT": str(CONTAINER_PORT),
        "MLDEPLOY_HOST": "0.0.0.0",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "MLDEPLOY_GRACEFUL_TIMEOUT": str(cfg.drain_seconds),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }
    if cfg.model_source is ModelSource.URI:
        env["MLDEPLOY_MODEL_URI"] = model.uri
    env.update(cfg.env)
    return [{"name": k, "value": v} for k, v in env.items()]


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
            "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": timeout,
            "successThreshold": 1}


def grace_period(cfg: KubernetesConfig) -> int:
    """Seconds between the pod's deletion and SIGKILL: preStop sleep + drain + a margin."""
    return cfg.pre_stop_seconds + cfg.drain_seconds + 5


def writable_volumes(cfg: KubernetesConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """``(volume name, mount path, emptyDir)``: /tmp (HOME, TMPDIR, caches), /dev/shm (the
    server's worker heartbeat files) and the configured extra paths."""
    vols = [("tmp", "/tmp", {"sizeLimit": "1Gi"}), ("dshm", "/dev/shm", {"medium": "Memory",
                                                                          "sizeLimit": "64Mi"})]
    for i, path in enumerate(cfg.writable_paths):
        vols.append((f"writable-{i}", path, {}))
    return vols


def container(cfg: KubernetesConfig, model: Model) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": model.image,
        "imagePullPolicy": cfg.image_pull_policy.value,
        "args": ["serve"],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(cfg, model),
        "resources": _resources(cfg),
        "startupProbe": _probe("/ping", PROBE_PERIOD,
                               math.ceil(cfg.startup_timeout_seconds / PROBE_PERIOD), 2),
        "readinessProbe": _probe("/ping", PROBE_PERIOD, 3, 2),
        "livenessProbe": _probe("/health", 10, 3, 5),
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "privileged": False, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": v, "mountPath": p} for v, p, _ in writable_volumes(cfg)],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if cfg.pre_stop_seconds:
        c["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(cfg.pre_stop_seconds)]}}}
    return c


def pod_spec(cfg: KubernetesConfig, model: Model) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container(cfg, model)],
        "volumes": [{"name": v, "emptyDir": e} for v, _, e in writable_volumes(cfg)],
        "securityContext": {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID,
                            "fsGroup": APP_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": grace_period(cfg),
        "automountServiceAccountToken": False,
    }
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    if cfg.node_selector:
        spec["nodeSelector"] = dict(cfg.node_selector)
    return spec


def spread(cfg: KubernetesConfig, name: str, variant: str) -> list[dict[str, Any]]:
    """Topology spread of one variant's pods: across nodes as ``cfg.spread`` says (the PDB then
    protects against a node drain: one node holds at most one more pod than another), and across
    zones where the cluster has them (best effort). Only pods of the same revision count
    (``matchLabelKeys``), so a rollout's surge pods are not held back by the old ones."""
    if cfg.spread is Spread.OFF:
        return []
    select = {"matchLabels": selector(name, variant)}
    node = {"maxSkew": 1, "topologyKey": HOSTNAME, "labelSelector": select,
            "matchLabelKeys": [TEMPLATE_HASH], "nodeTaintsPolicy": "Honor",
            "whenUnsatisfiable": "DoNotSchedule" if cfg.spread is Spread.REQUIRED
            else "ScheduleAnyway"}
    zone = {"maxSkew": 1, "topologyKey": ZONE, "labelSelector": select,
            "matchLabelKeys": [TEMPLATE_HASH], "whenUnsatisfiable": "ScheduleAnyway"}
    return [node, zone]


def pod_template(cfg: KubernetesConfig, name: str, variant: str, model: Model) -> dict[str, Any]:
    spec = pod_spec(cfg, model)
    constraints = spread(cfg, name, variant)
    if constraints:
        spec["topologySpreadConstraints"] = constraints
    return {
        "metadata": {"labels": labels(cfg, name, variant, model),
                     "annotations": {MODEL_URI: scrub_uri(model.uri), IMAGE: model.image,
                                     # Prometheus' pod discovery: the server's /metrics
                                     "prometheus.io/scrape": "true",
                                     "prometheus.io/port": str(CONTAINER_PORT),
                                     "prometheus.io/path": "/metrics"}},
        "spec": spec,
    }


def deployment(cfg: KubernetesConfig, name: str, namespace: str, model: Model, *,
               variant: str = STABLE, replicas: int | None = None) -> dict[str, Any]:
    """The Deployment of one variant. ``replicas`` None: none when an HPA owns the count (the
    stable variant with ``autoscale``), else ``min_replicas``."""
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    elif not (cfg.autoscale and variant == STABLE):
        spec["replicas"] = cfg.min_replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cfg, deployment_name(name, variant), namespace,
                          labels(cfg, name, variant, model),
                          {MODEL_URI: scrub_uri(model.uri)}),
        "spec": {
            **spec,
            "selector": {"matchLabels": selector(name, variant)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0,
                                           "maxSurge": _int_or_percent(cfg.max_surge)}},
            "progressDeadlineSeconds": cfg.progress_deadline_seconds,
            "revisionHistoryLimit": 5,
            "minReadySeconds": 0,
            "template": pod_template(cfg, name, variant, model),
        },
    }


def _int_or_percent(value: str) -> int | str:
    return value if value.endswith("%") else int(value)


def service(cfg: KubernetesConfig, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cfg, name, namespace, labels(cfg, name)),
        "spec": {
            "type": cfg.service_type.value,
            "selector": selector(name),
            "ports": [{"name": "http", "port": cfg.port, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }


def hpa(cfg: KubernetesConfig, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(cfg, name, namespace, labels(cfg, name)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": cfg.min_replicas,
            "maxReplicas": cfg.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization",
                           "averageUtilization": cfg.target_cpu_utilization}}}],
        },
    }


def pdb(cfg: KubernetesConfig, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(cfg, name, namespace, labels(cfg, name)),
        "spec": {"maxUnavailable": cfg.pdb_max_unavailable,
                 "selector": {"matchLabels": selector(name)}},
    }


def inference_service(cfg: KubernetesConfig, name: str, namespace: str,
                      model: Model) -> dict[str, Any]:
    """A KServe ``InferenceService`` running the image as a custom predictor (KServe passes
    requests through to the container: call ``/invocations`` on the predictor's URL)."""
    c = container(cfg, model)
    c["name"] = "kserve-container"
    for key in ("startupProbe", "livenessProbe", "lifecycle"):
        c.pop(key, None)
    predictor: dict[str, Any] = {
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas if cfg.autoscale else cfg.min_replicas,
        "containers": [c],
        "volumes": pod_spec(cfg, model)["volumes"],
        "securityContext": pod_spec(cfg, model)["securityContext"],
    }
    if cfg.autoscale:
        predictor["scaleMetric"] = "cpu"
        predictor["scaleTarget"] = cfg.target_cpu_utilization
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(cfg, name, namespace, labels(cfg, name, STABLE, model),
                          {MODEL_URI: scrub_uri(model.uri)}),
        "spec": {"predictor": predictor},
    }


def create_set(cfg: KubernetesConfig, name: str, namespace: str,
               model: Model) -> list[dict[str, Any]]:
    """Everything ``create`` makes, in creation order (the Service last: it gets traffic once
    there is a Deployment behind it)."""
    objs = [deployment(cfg, name, namespace, model)]
    if cfg.pdb:
        objs.append(pdb(cfg, name, namespace))
    if cfg.autoscale:
        objs.append(hpa(cfg, name, namespace))
    objs.append(service(cfg, name, namespace))
    return objs


def to_yaml(objects: list[Mapping[str, Any]]) -> str:
    """The objects as one multi-document YAML stream (``kubectl apply -f -`` reads it)."""
    import yaml

    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False,
                              default_flow_style=False)


def with_initial_replicas(cfg: KubernetesConfig, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The body ``create`` sends for ``obj``: a Deployment without ``replicas`` (the HPA's)
    starts at ``min_replicas`` rather than the API server's default of one pod, so the PDB
    holds from the first minute; the HPA owns the count from then on. Other objects as they are."""
    if obj.get("kind") != "Deployment" or "replicas" in obj["spec"]:
        return dict(obj)
    return {**obj, "spec": {"replicas": cfg.min_replicas, **obj["spec"]}}


__all__ = ["CANARY", "CANARY_WEIGHT", "CONTAINER_PORT", "MANAGED_BY", "MODEL_DIGEST", "MODEL_URI",
           "STABLE", "VARIANT", "VERSION", "Model", "create_set", "deployment", "digest_label",
           "hpa", "inference_service", "label_value", "labels", "model_version", "pdb",
           "pod_template", "resolvable_uri", "scrub_uri", "selector", "service", "spread",
           "to_yaml", "with_initial_replicas"]
