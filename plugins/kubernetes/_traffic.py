"""Canaries and requests for the Kubernetes target: ``add`` (a canary Deployment under the same
Service, its share of the pods = its share of the traffic), ``traffic`` (rescale, promote or
drop it) and ``invoke`` (through the API server's service proxy, or a pod's for one variant).

The HPA scales only the stable Deployment; the canary keeps the pod count ``add``/``traffic``
gave it, so its share falls as the stable one scales up (and rises as it scales down). On
purpose: with a second, proportional HPA a canary that burns more CPU per request would scale
itself up and take more traffic - the opposite of what a canary is for - and no CLI can hold a
ratio between two autoscaled Deployments without a controller running in the cluster. ``get``
and ``traffic`` report the share asked for, the share now and the drift; ``traffic`` re-sizes
the canary for the stable Deployment's current size. Functions over a ``Kube`` client and the
config; the target calls them from its hooks."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mldeploy.errors import InvocationError, UsageError, invocation_error
from mldeploy.plugins.kubernetes import _checks, _converge, _ops
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes._ops import rid, watch, watch_or_fail
from mldeploy.plugins.kubernetes._replace import roll
from mldeploy.plugins.kubernetes.config import KubernetesConfig
from mldeploy.plugins.kubernetes.errors import scrub
from mldeploy.target import Status
from mldeploy.transaction import Transaction

Say = Callable[..., None]


def replicas_for(stable: int, weight: float) -> int:
    """Canary pods so that canary / (stable + canary) comes closest to ``weight`` (at least 1)."""
    return max(1, round(weight * stable / (1 - weight))) if weight < 1 else stable


def promoted(stable: Mapping[str, Any], canary: Mapping[str, Any]) -> dict[str, Any]:
    """The stable Deployment running the canary's pod template (its variant label made
    ``stable``), with the canary's model version and URI in its own labels and annotations."""
    template = json.loads(json.dumps(canary["spec"]["template"]))
    template["metadata"]["labels"][mf.VARIANT] = mf.STABLE
    for tsc in template["spec"].get("topologySpreadConstraints") or []:
        tsc.get("labelSelector", {}).get("matchLabels", {})[mf.VARIANT] = mf.STABLE
    out = json.loads(json.dumps(dict(stable)))
    meta = out["metadata"]
    for label in (mf.VERSION, mf.MODEL_DIGEST):
        value = template["metadata"]["labels"].get(label)
        if value:
            meta.setdefault("labels", {})[label] = value
        else:
            meta.get("labels", {}).pop(label, None)
    uri = (canary["metadata"].get("annotations") or {}).get(mf.MODEL_URI)
    if uri:
        meta.setdefault("annotations", {})[mf.MODEL_URI] = uri
    out["spec"]["template"] = template
    _checks.check([out])
    return out


def canary_report(name: str, stable: Mapping[str, Any],
                  canary: Mapping[str, Any]) -> dict[str, Any]:
    """The canary's share: asked for (``requested_weight``), now (``weight``, from the pod
    counts), and ``drift`` - what happened and the command that re-balances - when the stable
    Deployment's size no longer gives the share asked for."""
    s, c = int(stable["spec"].get("replicas", 1)), int(canary["spec"].get("replicas", 1))
    raw = (canary["metadata"].get("annotations") or {}).get(mf.CANARY_WEIGHT)
    try:
        requested = float(raw) if raw is not None else None
    except ValueError:
        requested = None
    out: dict[str, Any] = {
        "requested_weight": requested, "weight": round(c / max(s + c, 1), 4),
        "stable_pods": s, "canary_pods": c,
        "scaling": "the autoscaler scales only the stable Deployment; the canary's pod count "
                   "is fixed"}
    if requested is not None and replicas_for(s, requested) != c:
        out["drift"] = (f"{name} has {s} pods since the canary was sized for "
                        f"{requested:.0%}: it now gets {out['weight']:.0%}; re-balance with "
                        f"mldeploy traffic -n {name} -w stable={1 - requested:g},"
                        f"canary={requested:g}")
    return out


def canary_replicas(config: KubernetesConfig, stable: Mapping[str, Any],
                    weight: float | None = None) -> int:
    """Canary pods for ``weight`` against the stable Deployment's desired size (the HPA's
    count, not the pods of a rollout in flight)."""
    count = int(stable["spec"].get("replicas", 1))
    return replicas_for(count, config.canary_weight if weight is None else weight)


def canary_manifest(config: KubernetesConfig, name: str, namespace: str, model: mf.Model,
                    stable: Mapping[str, Any]) -> dict[str, Any]:
    """The canary Deployment ``add`` creates, sized for ``canary_weight`` of the stable
    Deployment's pods, the weight recorded in an annotation."""
    canary = mf.deployment(config, name, namespace, model, variant=mf.CANARY,
                           replicas=canary_replicas(config, stable))
    canary["metadata"]["annotations"][mf.CANARY_WEIGHT] = f"{config.canary_weight:g}"
    _checks.check([canary])
    return canary


def refuse_second_canary(kube: Kube, name: str) -> None:
    if kube.get("Deployment", mf.deployment_name(name, mf.CANARY)) is not None:
        raise UsageError(f"{name!r} already has a canary",
                         hint="promote or drop it first: mldeploy traffic -w "
                              "canary=1 (promote) or canary=0 (drop)")


def add_canary(kube: Kube, config: KubernetesConfig, name: str, stable: Mapping[str, Any],
               model: mf.Model, *, tx: Transaction, say: Say) -> None:
    """Create the canary Deployment in ``tx`` and (``tx.wait``) watch its rollout."""
    canary = canary_manifest(config, name, kube.namespace, model, stable)
    cname = canary["metadata"]["name"]
    tx.hint = "the canary was removed; the stable model serves all traffic"
    _ops.create(tx, kube, canary)
    say(f"created canary {rid('Deployment', kube.namespace, cname)} with "
        f"{canary['spec']['replicas']} pods", Status.UPDATING)
    if tx.wait:
        watch_or_fail(kube, cname, config, timeout=tx.timeout, say=say)


def set_traffic(kube: Kube, config: KubernetesConfig, name: str, weights: Mapping[str, float],
                *, stable: dict[str, Any], canary: dict[str, Any] | None,
                share: Mapping[str, float], wait: bool, timeout: float, say: Say) -> None:
    """Rescale, promote (weight 1) or drop (weight 0) the canary of ``name``; ``share`` is
    each variant's current share of the pods."""
    known = {mf.STABLE, mf.CANARY} if canary is not None else {mf.STABLE}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise UsageError(f"{name!r} has no variant {unknown[0]!r}",
                         hint=f"variants: {', '.join(sorted(known))}")
    w = {k: float(v) for k, v in weights.items()}
    if any(v < 0 for v in w.values()):
        raise UsageError("traffic weights cannot be negative")
    if canary is None:
        return
    s, c = w.get(mf.STABLE, share[mf.STABLE]), w.get(mf.CANARY, share[mf.CANARY])
    if s + c <= 0:
        raise UsageError("traffic weights add up to 0", hint="give one variant weight")
    fraction = c / (s + c)
    cname = canary["metadata"]["name"]
    if fraction == 0:
        kube.delete("Deployment", cname)
        say(f"dropped canary {cname}", Status.READY)
    elif fraction == 1:
        promote(kube, config, name, stable, canary, wait=wait, timeout=timeout, say=say)
    else:
        n = canary_replicas(config, stable, fraction)
        kube.patch("Deployment", cname, {
            "metadata": {"annotations": {mf.CANARY_WEIGHT: f"{fraction:g}"}},
            "spec": {"replicas": n}})
        say(f"canary {cname} scaled to {n} pods for {fraction:.0%} of the "
            f"traffic; the autoscaler scales only {name}, so re-run traffic "
            "after it does", Status.UPDATING)
        if wait:
            watch(kube, cname, timeout=timeout or config.timeout_seconds,
                  poll=config.poll_interval_seconds, log_lines=0, say=say)


def promote(kube: Kube, config: KubernetesConfig, name: str, stable: dict[str, Any],
            canary: dict[str, Any], *, wait: bool, timeout: float, say: Say) -> None:
    """The stable Deployment takes the canary's pod template (a watched rollout with
    rollback), keeping its own labels, annotations and rollout settings; then the canary
    goes."""
    step = _converge.step("Deployment", name, stable, promoted(stable, canary))
    tx = Transaction("kubernetes", "promotion", name, wait=wait, timeout=timeout, existed=True)
    roll(kube, config, name, step, tx=tx, say=say)
    kube.delete("Deployment", canary["metadata"]["name"])
    say(f"promoted the canary of {name}", Status.READY)


# -- invoke -----------------------------------------------------------------------------------


def send(kube: Kube, name: str, body: bytes, ctype: str,
         variant: str | None) -> tuple[int, bytes, str | None]:
    """POST ``body`` to ``/invocations`` through the Service's proxy (or one ready pod's of
    ``variant``): ``(status, body, content type)``."""
    if variant is None:
        return kube.proxy("Service", name, "http", "invocations", body, content_type=ctype)
    return kube.proxy("Pod", ready_pod(kube, name, variant), "8080", "invocations", body,
                      content_type=ctype)


def ready_pod(kube: Kube, name: str, variant: str) -> str:
    if variant not in (mf.STABLE, mf.CANARY):
        raise InvocationError(f"{name!r} has no variant {variant!r}", status=400,
                              hint="variants: stable, canary")
    pods = [p for p in kube.list("Pod", mf.selector(name, variant)) if any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (p.get("status") or {}).get("conditions") or [])]
    if not pods:
        raise InvocationError(f"no ready pod of variant {variant!r} of {name!r}", status=503,
                              hint="mldeploy get shows the rollout")
    return sorted(p["metadata"]["name"] for p in pods)[0]


def _invocation_error(name: str, status: int, raw: bytes) -> InvocationError:
    """An error answer through the service proxy: the API server's own ``Status`` (no model
    behind the Service), else the serving container's, decoded as on every target."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return InvocationError(f"cannot reach the model behind {name!r}: "
                               f"{scrub(str(body.get('message', '')), 300)}", status=status,
                               hint="mldeploy get shows whether pods are ready")
    return invocation_error(name, status, raw,
                            hint="kubectl logs -l app.kubernetes.io/instance=" + name)


__all__ = ["add_canary", "canary_manifest", "canary_replicas", "canary_report", "promote",
           "promoted", "ready_pod", "refuse_second_canary", "replicas_for", "send",
           "set_traffic"]
