"""Semantic checks of generated objects: what the API server rejects (422) or what breaks at run
time, but a JSON schema cannot see - invalid names and label syntax, selectors that do not match
the pod labels, unparsable quantities, requests above limits, HPA min above max, probes naming a
port the container does not have. :func:`check` raises ``ConfigError`` naming the object and
field; the schemas (validated in the tests for Kubernetes 1.29-1.37) cover fields and types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from mldeploy.errors import ConfigError

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS_LABEL = re.compile(rf"^{_LABEL}$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``500m``, ``2Gi``, ``1e3``, ``4``) as a Decimal, read by
    ``kubernetes.utils.parse_quantity``; ValueError if it is not one (a boolean or a float is
    not: the API server wants a string or an integer)."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (
            isinstance(text, str) and any(c.isspace() for c in text)):  # "2 Gi": the API refuses
        raise ValueError(f"{value!r} is not a quantity")
    from kubernetes.utils import parse_quantity as parse

    try:
        return Decimal(parse(text))
    except (ValueError, ArithmeticError):
        raise ValueError(f"{value!r} is not a quantity") from None


def _where(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind', 'object')} {obj.get('metadata', {}).get('name', '?')!r}"


def _fail(obj: Mapping[str, Any], message: str, hint: str | None = None) -> None:
    raise ConfigError(f"{_where(obj)}: {message}", hint=hint)


def check_key(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain, name at most 63."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_KEY_NAME.match(name))


def check_label_value(value: Any) -> bool:
    return isinstance(value, str) and (value == "" or (len(value) <= 63
                                                       and bool(_KEY_NAME.match(value))))


def _check_meta(obj: Mapping[str, Any]) -> None:
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    kind = obj.get("kind")
    if kind in ("Service", "InferenceService"):
        if not (DNS_1035.match(name) and len(name) <= 63):
            _fail(obj, "the name must be a DNS-1035 label (a letter first, then lowercase "
                       "letters, digits and '-', at most 63)")
    elif not (DNS_SUBDOMAIN.match(name) and len(name) <= 253):
        _fail(obj, "the name must be a DNS subdomain (lowercase letters, digits, '-' and '.')")
    ns = meta.get("namespace")
    if ns is not None and not (DNS_LABEL.match(ns) and len(ns) <= 63):
        _fail(obj, f"namespace {ns!r} is not a valid namespace name")
    for key, value in {**meta.get("labels", {})}.items():
        if not check_key(key):
            _fail(obj, f"label key {key!r} is invalid", hint="[prefix/]name, name at most 63")
        if not check_label_value(value):
            _fail(obj, f"label {key}={value!r} is not a valid label value",
                  hint="at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends")
    for key in meta.get("annotations", {}):
        if not check_key(key):
            _fail(obj, f"annotation key {key!r} is invalid")


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _check_resources(obj: Mapping[str, Any], c: Mapping[str, Any]) -> None:
    res = c.get("resources", {})
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("requests", "limits"):
        for key, value in res.get(kind, {}).items():
            try:
                parsed.setdefault(kind, {})[key] = parse_quantity(value)
            except ValueError:
                _fail(obj, f"{kind}.{key}={value!r} is not a quantity",
                      hint="e.g. 500m or 2 for CPU, 512Mi or 2Gi for memory")
            if parsed[kind][key] < 0:
                _fail(obj, f"{kind}.{key} is negative")
    for key, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(key)
        if limit is not None and request > limit:
            _fail(obj, f"the {key} request ({res['requests'][key]}) exceeds its limit "
                       f"({res['limits'][key]})")


def _check_pod(obj: Mapping[str, Any], template: Mapping[str, Any]) -> None:
    spec = template.get("spec", {})
    volumes = [v["name"] for v in spec.get("volumes", [])]
    if len(set(volumes)) != len(volumes):
        _fail(obj, "two volumes have the same name")
    for c in spec.get("containers", []):
        ports = {p.get("name") for p in c.get("ports", [])}
        for p in c.get("ports", []):
            name = p.get("name", "")
            if name and not (len(name) <= 15 and _PORT_NAME.match(name)):
                _fail(obj, f"port name {name!r} must be at most 15 lowercase alphanumerics/'-'")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                _fail(obj, f"{probe} uses port {port!r}, which the container does not declare")
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if len(set(mounts)) != len(mounts):
            _fail(obj, "two volume mounts have the same path")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                _fail(obj, f"volume mount {m['mountPath']} names no volume {m['name']!r}")
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") and "/tmp" not in mounts:
            _fail(obj, "a read-only root filesystem needs a writable /tmp for the server")
        _check_resources(obj, c)


def _check_deployment(obj: Mapping[str, Any]) -> None:
    spec = obj["spec"]
    template_labels = spec["template"]["metadata"].get("labels", {})
    if not _matches(spec["selector"].get("matchLabels", {}), template_labels):
        _fail(obj, "spec.selector does not match the pod template's labels")
    for tsc in spec["template"].get("spec", {}).get("topologySpreadConstraints", []):
        if not _matches(tsc.get("labelSelector", {}).get("matchLabels", {}), template_labels):
            _fail(obj, f"the topology spread on {tsc.get('topologyKey')} does not select the "
                       "Deployment's own pods")
        if tsc.get("maxSkew", 0) < 1:
            _fail(obj, "a topology spread's maxSkew must be at least 1")
    if spec.get("replicas", 1) < 0:
        _fail(obj, "replicas is negative")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    if rolling.get("maxUnavailable") in (0, "0%") and rolling.get("maxSurge") in (0, "0%"):
        _fail(obj, "maxSurge and maxUnavailable cannot both be 0")
    if spec.get("progressDeadlineSeconds", 600) <= spec.get("minReadySeconds", 0):
        _fail(obj, "progressDeadlineSeconds must exceed minReadySeconds")
    _check_pod(obj, spec["template"])


def check(objects: Iterable[Mapping[str, Any]]) -> None:
    """Check a set of objects together (selectors are checked against the Deployments in it)."""
    objs = list(objects)
    templates = {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("labels", {})
                 for o in objs if o.get("kind") == "Deployment"}
    for obj in objs:
        _check_meta(obj)
        kind, spec = obj.get("kind"), obj.get("spec", {})
        if kind == "Deployment":
            _check_deployment(obj)
        elif kind == "Service":
            sel = spec.get("selector", {})
            if not sel:
                _fail(obj, "the selector is empty: it would select nothing mldeploy made")
            for dep, labels in templates.items():
                if not _matches(sel, labels):
                    _fail(obj, f"the selector does not match the pods of Deployment {dep!r}")
            for port in spec.get("ports", []):
                if not 1 <= int(port.get("port", 0)) <= 65535:
                    _fail(obj, f"port {port.get('port')} is out of range")
        elif kind == "HorizontalPodAutoscaler":
            lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
            if lo < 1 or lo > hi:
                _fail(obj, f"minReplicas ({lo}) must be at least 1 and at most maxReplicas "
                           f"({hi})")
            target = spec.get("scaleTargetRef", {}).get("name")
            if templates and target not in templates:
                _fail(obj, f"scaleTargetRef names Deployment {target!r}, which is not created")
        elif kind == "PodDisruptionBudget":
            sel = spec.get("selector", {}).get("matchLabels", {})
            for dep, labels in templates.items():
                if not _matches(sel, labels):
                    _fail(obj, f"the selector does not match the pods of Deployment {dep!r}")
        elif kind == "InferenceService":
            _check_pod(obj, {"spec": spec.get("predictor", {})})


__all__ = ["check", "check_key", "check_label_value", "parse_quantity"]
