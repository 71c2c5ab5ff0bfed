"""The transactional steps the target is made of: creating, updating and deleting objects with
each change recorded in the core's transaction together with its undo, waiting for a rollout
with progress, and the exact merge patches that move an object to a new state and back again."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.plugins.kubernetes import _rollout
from mldeploy.plugins.kubernetes._client import KINDS, Kube
from mldeploy.target import Resource
from mldeploy.transaction import StepFailed, StepTimedOut, Transaction

Say = Callable[[str], None]
SYSTEM_ANNOTATIONS = ("deployment.kubernetes.io/", "kubectl.kubernetes.io/")
_SERVER_META = ("name", "namespace", "labels", "annotations")


def rid(kind: str, namespace: str, name: str) -> str:
    """The id of an object in results and messages: ``Kind/namespace/name``."""
    return f"{kind}/{namespace}/{name}"


def resource(kind: str, namespace: str, name: str) -> Resource:
    """An object as a :class:`~mldeploy.target.Resource` (kind lower-case, id ``Kind/ns/name``),
    as results and errors report it."""
    return Resource(kind.lower(), rid(kind, namespace, name))


def create(tx: Transaction, kube: Kube, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Create ``obj``, recorded in ``tx`` (undo: delete it; already gone is fine)."""
    made = kube.create(obj)
    kind, name = obj["kind"], obj["metadata"]["name"]
    tx.record(resource(kind, kube.namespace, name), functools.partial(kube.delete, kind, name))
    return made


def update(tx: Transaction, kube: Kube, kind: str, live: Mapping[str, Any],
           patch: Mapping[str, Any]) -> dict[str, Any]:
    """Merge-patch the object ``live`` (as read before this run changed it), recorded in ``tx``
    (undo: patch it back to its previous labels, annotations and spec)."""
    name = live["metadata"]["name"]
    done = kube.patch(kind, name, patch)
    tx.record(resource(kind, kube.namespace, name),
              functools.partial(restore, kube, kind, name, dict(live)))
    return done


def delete(tx: Transaction, kube: Kube, kind: str, live: Mapping[str, Any]) -> None:
    """Delete the object ``live``, recorded in ``tx`` (undo: create it again); one gone
    meanwhile (404) is not recreated."""
    name = live["metadata"]["name"]
    if kube.delete(kind, name):
        tx.record(resource(kind, kube.namespace, name),
                  functools.partial(restore, kube, kind, name, dict(live)))


def restore(kube: Kube, kind: str, name: str, before: Mapping[str, Any]) -> None:
    """Put object ``name`` back as ``before``: created again if gone, else patched back."""
    current = kube.get(kind, name)
    if current is None:
        kube.create(recreatable(kind, before))
        return
    patch = merge_patch(view(current, kind=kind, replicas=True),
                        view(before, kind=kind, replicas=True))
    if patch:
        kube.patch(kind, name, patch)


def recreatable(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as read from the API server, without what the server sets (uid, versions,
    timestamps, status): a body that creates it again."""
    meta = obj.get("metadata") or {}
    prefix = KINDS[kind][0]
    return {"apiVersion": prefix.removeprefix("/apis/").removeprefix("/api/"), "kind": kind,
            "metadata": {k: meta[k] for k in _SERVER_META if meta.get(k) is not None},
            "spec": obj.get("spec") or {}}


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


def view(obj: Mapping[str, Any], *, kind: str | None = None,
         replicas: bool = False) -> dict[str, Any]:
    """The part of an object mldeploy manages: labels, annotations (not the controllers' or
    kubectl's) and the spec - a Deployment's without the selector (immutable) and, unless
    ``replicas``, without the replica count (the HPA's)."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(SYSTEM_ANNOTATIONS)}
    drop = set()
    if (kind or obj.get("kind")) == "Deployment":
        drop = {"selector"} if replicas else {"selector", "replicas"}
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k not in drop}
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


def watch_or_fail(kube: Kube, name: str, config: Any, *, timeout: float,
                  say: Callable[..., None]) -> None:
    """Watch Deployment ``name`` roll out; raise StepFailed / StepTimedOut (the core's
    transaction then undoes what the run made) if it fails or times out."""
    outcome = watch(kube, name, timeout=timeout or config.timeout_seconds,
                    poll=config.poll_interval_seconds, log_lines=config.log_lines, say=say)
    if outcome.ok:
        return
    if outcome.timed_out:
        raise StepTimedOut(outcome.reason.removeprefix("timed out "))
    raise StepFailed(outcome.reason)


def leftover_hint(leftover: list[Resource], verb: str) -> str:
    """The hint for objects an undo could not handle: which, and what to do by hand (the CLI
    shows the message and the hint only)."""
    return f"{verb} by hand what could not be undone: {', '.join(r.id for r in leftover)}"


__all__ = ["Outcome", "create", "delete", "leftover_hint", "merge_patch", "owned_replicasets",
           "recreatable", "resource", "restore", "rid", "update", "view", "watch",
           "watch_or_fail"]
