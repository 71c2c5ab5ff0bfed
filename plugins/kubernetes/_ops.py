"""The transactional steps the target is made of: a ledger of created objects (undone in reverse
on failure), waiting for a rollout with progress, and the exact merge patches that move a
Deployment to a new pod template and back again."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mldeploy.errors import DeploymentFailedError, DeploymentTimeoutError, MldeployError
from mldeploy.plugins.kubernetes import _rollout
from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes.errors import ApiError, Unreachable

Say = Callable[[str], None]
_SYSTEM_ANNOTATIONS = ("deployment.kubernetes.io/", "kubectl.kubernetes.io/")


def rid(kind: str, namespace: str, name: str) -> str:
    """The id of an object in results and messages: ``Kind/namespace/name``."""
    return f"{kind}/{namespace}/{name}"


@dataclass
class Ledger:
    """What this run created, undone in reverse on failure."""

    kube: Kube
    items: list[tuple[str, str]] = field(default_factory=list)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        made = self.kube.create(obj)
        self.items.append((obj["kind"], obj["metadata"]["name"]))
        return made

    def undo(self) -> tuple[list[str], list[str]]:
        cleaned, leftover = [], []
        for kind, name in reversed(self.items):
            label = rid(kind, self.kube.namespace, name)
            try:
                self.kube.delete(kind, name)
                cleaned.append(label)
            except (ApiError, Unreachable, MldeployError):
                leftover.append(label)
        self.items.clear()
        return cleaned, leftover


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str = ""
    timed_out: bool = False


def watch(kube: Kube, name: str, *, timeout: float, poll: float, log_lines: int,
          say: Say) -> Outcome:
    """Wait for Deployment ``name``'s rollout: ok, failed (progress deadline, or new pods that
    cannot start: image pull, crash loop), or timed out - with the reason from the pods."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        dep = kube.get("Deployment", name)
        if dep is None:
            return Outcome(False, f"Deployment {name} was deleted during the rollout")
        st = _rollout.state(dep)
        if st.message != last:
            say(f"{name}: {st.message}")
            last = st.message
        if st.phase is _rollout.Phase.DONE:
            return Outcome(True)
        rs = _rollout.current_replicaset(kube, dep)
        pods = _rollout.pods_of(kube, rs) if rs is not None else []
        stuck = _rollout.fatal(pods)
        if st.phase is _rollout.Phase.FAILED or stuck:
            why = _rollout.explain(kube, pods, log_lines=log_lines)
            head = st.message if st.phase is _rollout.Phase.FAILED else (
                f"new pods cannot start ({stuck[0][1]})")
            return Outcome(False, f"{head}: {why}" if why else head)
        if time.monotonic() >= deadline:
            not_ready = [p for p in pods if not _ready(p)]
            why = _rollout.explain(kube, not_ready, log_lines=log_lines) if not_ready else ""
            return Outcome(False, f"timed out after {timeout:g} s ({st.message})"
                           + (f": {why}" if why else ""), timed_out=True)
        time.sleep(poll)


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def view(dep: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Deployment a replace changes: labels, annotations (not the controller's)
    and the spec except replicas (the HPA's) and the selector (immutable)."""
    meta = dep.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(_SYSTEM_ANNOTATIONS)}
    spec = {k: v for k, v in (dep.get("spec") or {}).items() if k not in ("replicas",
                                                                         "selector")}
    return {"metadata": {"labels": dict(meta.get("labels") or {}), "annotations": annotations},
            "spec": spec}


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (None removes a key)."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                out[key] = sub
        elif before != value:
            out[key] = value
    for key in old:
        if key not in new:
            out[key] = None
    return out


def owned_replicasets(kube: Kube, dep: Mapping[str, Any]) -> dict[str, str]:
    """``{name: uid}`` of the ReplicaSets ``dep`` owns."""
    uid = dep["metadata"].get("uid")
    return {rs["metadata"]["name"]: rs["metadata"].get("uid", "")
            for rs in kube.list("ReplicaSet", dep["spec"]["selector"].get("matchLabels"))
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])}


__all__ = ["Ledger", "Outcome", "merge_patch", "owned_replicasets", "rid", "view", "watch"]


def watch_or_undo(kube: Kube, name: str, ledger: Ledger, config: Any, *, timeout: float | None,
                  say: Callable[..., None], failed: str, hint: str) -> None:
    """Watch Deployment ``name`` roll out; if it fails or times out, remove what ``ledger``
    created and raise (``hint`` when nothing is left over, else how to clean up by hand)."""
    outcome = watch(kube, name, timeout=timeout or config.timeout_seconds,
                    poll=config.poll_interval_seconds, log_lines=config.log_lines, say=say)
    if outcome.ok:
        return
    cleaned, leftover = ledger.undo()
    cls = DeploymentTimeoutError if outcome.timed_out else DeploymentFailedError
    raise cls(f"{failed}: {outcome.reason}", cleaned=cleaned, leftover=leftover,
              hint=hint if not leftover else "remove the leftover objects named above by hand")
