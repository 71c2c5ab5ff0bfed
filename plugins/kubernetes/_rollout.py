"""Rollouts: where a Deployment's rollout stands (as ``kubectl rollout status`` judges it), the
pod states that mean it will not succeed (image pull failures, crash loops), and the reason for
a failure from the pods' container states, events and log tails - without stack frames or
credentials."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes.errors import scrub, strip_traceback

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
# Waiting reasons after which a new pod will not become ready without a change by the user
# (ErrImagePull is not one: the kubelet retries it once before ImagePullBackOff, which rides out
# a registry hiccup).
FATAL = {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
         "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
         "RunContainerError"}


class Phase(str, enum.Enum):
    PROGRESSING = "progressing"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class State:
    phase: Phase
    message: str
    available: int = 0
    desired: int = 0


def state(dep: Mapping[str, Any]) -> State:
    """Where the rollout of ``dep`` stands, from its status (the rules of kubectl)."""
    meta, spec, status = dep["metadata"], dep.get("spec", {}), dep.get("status") or {}
    desired = int(spec.get("replicas", 1))
    available = int(status.get("availableReplicas") or 0)
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        return State(Phase.PROGRESSING, "waiting for the controller to see the change",
                     available, desired)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return State(Phase.FAILED, f"no progress within progressDeadlineSeconds "
                         f"({spec.get('progressDeadlineSeconds', 600)} s)", available, desired)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if updated < desired:
        return State(Phase.PROGRESSING, f"{updated} of {desired} new pods created",
                     available, desired)
    if total > updated:
        return State(Phase.PROGRESSING, f"{total - updated} old pods still running",
                     available, desired)
    if available < updated:
        return State(Phase.PROGRESSING, f"{available} of {updated} new pods available",
                     available, desired)
    return State(Phase.DONE, f"{available} of {desired} pods available", available, desired)


def current_replicaset(kube: Kube, dep: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ReplicaSet of the Deployment's current revision (the one being rolled out)."""
    revision = (dep["metadata"].get("annotations") or {}).get(REVISION)
    uid = dep["metadata"].get("uid")
    for rs in kube.list("ReplicaSet", dep["spec"]["selector"].get("matchLabels")):
        owners = rs["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == uid for o in owners) and revision and (
                rs["metadata"].get("annotations") or {}).get(REVISION) == revision:
            return rs
    return None


def pods_of(kube: Kube, rs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return kube.list("Pod", rs["spec"]["selector"].get("matchLabels"))


def fatal(pods: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Pods whose containers wait for a reason that needs the user: ``(pod, reason)``."""
    out = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL:
                out.append((pod, waiting["reason"]))
                break
    return out


def explain(kube: Kube, pods: list[dict[str, Any]], *, log_lines: int,
            limit: int = 2) -> str:
    """Why ``pods`` are not ready: container state, warning events and log tail of a few."""
    parts = []
    for pod in sorted(pods, key=lambda p: not fatal([p]))[:limit]:
        name = pod["metadata"]["name"]
        bits = []
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            term = (cs.get("lastState") or {}).get("terminated") or {}
            if waiting.get("reason"):
                bits.append(waiting["reason"])
            if term:
                bits.append(f"last exit code {term.get('exitCode')}"
                            + (f" ({term['reason']})" if term.get("reason") else ""))
            if cs.get("restartCount"):
                bits.append(f"{cs['restartCount']} restarts")
        events = [e for e in kube.list("Event", fields={"involvedObject.name": name})
                  if e.get("type") == "Warning"]
        for e in events[-3:]:
            bits.append(f"{e.get('reason')}: {e.get('message')}")
        if log_lines:
            restarted = any(cs.get("restartCount") for cs in
                            (pod.get("status") or {}).get("containerStatuses") or [])
            text = kube.log(name, (pod["spec"]["containers"][0]["name"]), tail=log_lines * 3,
                            previous=restarted)
            tail = strip_traceback(text.splitlines())[-log_lines:]
            if tail:
                bits.append("log: " + " | ".join(tail))
        parts.append(f"pod {name}: " + ("; ".join(bits) or "not ready"))
    return scrub("; ".join(parts), 1500)


__all__ = ["FATAL", "HASH", "REVISION", "Phase", "State", "current_replicaset", "explain",
           "fatal", "pods_of", "state"]
