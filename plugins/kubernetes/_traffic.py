"""Canaries and requests for the Kubernetes target: ``add`` (a canary Deployment under the same
Service, its share of the pods = its share of the traffic), ``traffic`` (rescale, promote or
drop it) and ``invoke`` (through the API server's service proxy, or a pod's for one variant).

The HPA scales only the stable Deployment; the canary keeps the pod count ``add``/``traffic``
gave it, so its share falls as the stable one scales up (and rises as it scales down). On
purpose: with a second, proportional HPA a canary that burns more CPU per request would scale
itself up and take more traffic - the opposite of what a canary is for - and no CLI can hold a
ratio between two autoscaled Deployments without a controller running in the cluster. ``get``
and ``traffic`` report the share asked for, the share now and the drift; ``traffic`` re-sizes
the canary for the stable Deployment's current size."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mldeploy.errors import InvocationError, UsageError, invocation_error
from mldeploy.plugins.kubernetes import _checks, _converge
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._ops import Ledger, rid, watch, watch_or_undo
from mldeploy.plugins.kubernetes.errors import ApiError, Unreachable, scrub, translate
from mldeploy.target import Deployment, Prediction, Status, encode_payload

if TYPE_CHECKING:
    from mldeploy.plugins.kubernetes.target import KubernetesTarget as _Base
else:
    _Base = object


def replicas_for(stable: int, weight: float) -> int:
    """Canary pods so that canary / (stable + canary) comes closest to ``weight`` (at least 1)."""
    return max(1, round(weight * stable / (1 - weight))) if weight < 1 else stable


def promoted(stable: Mapping[str, Any], canary: Mapping[str, Any]) -> dict[str, Any]:
    """The stable Deployment running the canary's pod template (its variant label made
    ``stable``), with the canary's model version and URI in its own labels and annotations."""
    template = json.loads(json.dumps(canary["spec"]["template"]))
    template["metadata"]["labels"][mf.VARIANT] = mf.STABLE
    out = json.loads(json.dumps(dict(stable)))
    meta = out["metadata"]
    version = template["metadata"]["labels"].get(mf.VERSION)
    if version:
        meta.setdefault("labels", {})[mf.VERSION] = version
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


class TrafficMixin(_Base):
    def canary_replicas(self, stable: Mapping[str, Any], weight: float | None = None) -> int:
        """Canary pods for ``weight`` against the stable Deployment's desired size (the HPA's
        count, not the pods of a rollout in flight)."""
        count = int(stable["spec"].get("replicas", 1))
        return replicas_for(count, self.config.canary_weight if weight is None else weight)

    def canary_manifest(self, name: str, namespace: str, model: mf.Model,
                        stable: Mapping[str, Any]) -> dict[str, Any]:
        """The canary Deployment ``add`` creates, sized for ``canary_weight`` of the stable
        Deployment's pods, the weight recorded in an annotation."""
        canary = mf.deployment(self.config, name, namespace, model, variant=mf.CANARY,
                               replicas=self.canary_replicas(stable))
        canary["metadata"]["annotations"][mf.CANARY_WEIGHT] = f"{self.config.canary_weight:g}"
        _checks.check([canary])
        return canary

    def add(self, name: str, model_uri: str, *, wait: bool = True,
            timeout: float | None = None) -> Deployment:
        self.restart_clock()
        kube = self.kube()
        with self._guard(f"add to {name}", name):
            stable = self._ours(kube, name)
            cname = mf.deployment_name(name, mf.CANARY)
            if kube.get("Deployment", cname) is not None:
                raise UsageError(f"{name!r} already has a canary",
                                 hint="promote or drop it first: mldeploy traffic -w "
                                      "canary=1 (promote) or canary=0 (drop)")
            model = self._model(name, model_uri, build=True)
            canary = self.canary_manifest(name, kube.namespace, model, stable)
            ledger = Ledger(kube)
            try:
                ledger.create(canary)
            except (ApiError, Unreachable) as exc:
                raise translate(exc, f"add to {name}") from None
            self._say(f"created canary {rid('Deployment', kube.namespace, cname)} with "
                      f"{canary['spec']['replicas']} pods", Status.UPDATING)
            if wait:
                watch_or_undo(kube, cname, ledger, self.config, timeout=timeout, say=self._say,
                              failed=f"canary of {name!r} failed",
                              hint="the canary was removed; the stable model serves all traffic")
            return self.get(name)

    def traffic(self, name: str, weights: Mapping[str, float], *, wait: bool = True,
                timeout: float | None = None) -> Deployment:
        self.restart_clock()
        kube = self.kube()
        with self._guard(f"traffic {name}", name):
            stable = self._ours(kube, name)
            canary = kube.get("Deployment", mf.deployment_name(name, mf.CANARY))
            known = {mf.STABLE, mf.CANARY} if canary is not None else {mf.STABLE}
            unknown = sorted(set(weights) - known)
            if unknown:
                raise UsageError(f"{name!r} has no variant {unknown[0]!r}",
                                 hint=f"variants: {', '.join(sorted(known))}")
            w = {k: float(v) for k, v in weights.items()}
            if any(v < 0 for v in w.values()):
                raise UsageError("traffic weights cannot be negative")
            if canary is None:
                return self.get(name)
            current = self.get(name).variants
            share = {v.name: v.weight for v in current}
            s, c = w.get(mf.STABLE, share[mf.STABLE]), w.get(mf.CANARY, share[mf.CANARY])
            if s + c <= 0:
                raise UsageError("traffic weights add up to 0", hint="give one variant weight")
            fraction = c / (s + c)
            cname = canary["metadata"]["name"]
            if fraction == 0:
                kube.delete("Deployment", cname)
                self._say(f"dropped canary {cname}", Status.READY)
            elif fraction == 1:
                self._promote(kube, name, stable, canary, wait=wait, timeout=timeout)
            else:
                n = self.canary_replicas(stable, fraction)
                kube.patch("Deployment", cname, {
                    "metadata": {"annotations": {mf.CANARY_WEIGHT: f"{fraction:g}"}},
                    "spec": {"replicas": n}})
                self._say(f"canary {cname} scaled to {n} pods for {fraction:.0%} of the "
                          f"traffic; the autoscaler scales only {name}, so re-run traffic "
                          "after it does", Status.UPDATING)
                if wait:
                    watch(kube, cname, timeout=timeout or self.config.timeout_seconds,
                          poll=self.config.poll_interval_seconds, log_lines=0, say=self._say)
            return self.get(name)

    def _promote(self, kube: Any, name: str, stable: dict[str, Any], canary: dict[str, Any], *,
                 wait: bool, timeout: float | None) -> None:
        """The stable Deployment takes the canary's pod template (a watched rollout with
        rollback), keeping its own labels, annotations and rollout settings; then the canary
        goes."""
        step = _converge.step("Deployment", name, stable, promoted(stable, canary))
        self.roll(kube, name, step, wait=wait, timeout=timeout)
        kube.delete("Deployment", canary["metadata"]["name"])
        self._say(f"promoted the canary of {name}", Status.READY)

    # -- invoke -------------------------------------------------------------------------------

    def invoke(self, name: str, data: Any, *, content_type: str | None = None,
               variant: str | None = None) -> Prediction:
        kube = self.kube()
        body, ctype = encode_payload(data, content_type)
        with self._guard(f"invoke {name}", name):
            svc = kube.get("Service", name)
            if svc is None or (svc["metadata"].get("labels") or {}).get(
                    mf.MANAGED_BY) != "mldeploy":
                self._ours(kube, name)  # raises DeploymentNotFoundError
            if variant is None:
                status, raw, rtype = kube.proxy("Service", name, "http", "invocations", body,
                                                content_type=ctype)
            else:
                status, raw, rtype = kube.proxy("Pod", self._pod(kube, name, variant), "8080",
                                                "invocations", body, content_type=ctype)
        if status >= 400:
            raise _invocation_error(name, status, raw)
        return Prediction.from_response(raw, rtype, variant=variant)

    def _pod(self, kube: Any, name: str, variant: str) -> str:
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


__all__ = ["TrafficMixin", "canary_report", "promoted", "replicas_for"]
