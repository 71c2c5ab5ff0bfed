"""The controllers of the fake cluster: Deployment -> ReplicaSets -> Pods, with rollout status,
revisions, pod states (ready, crash loop, image pull failure, failing readiness), events and
container logs. Pure bookkeeping on a :class:`Store`; time is the caller's clock.

Simplified against the real controllers (documented, not hidden): a new ReplicaSet is scaled to
the full replica count at once (maxSurge is not metered); old ReplicaSets shrink only as new pods
become available (maxUnavailable 0); deletion and garbage collection are immediate.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
FATAL_AFTER = 2  # ready_delay periods until a failing container shows its back-off state


class Store(Protocol):
    def items(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def put(self, obj: dict[str, Any]) -> None: ...
    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    def remove(self, kind: str, namespace: str, name: str) -> None: ...


@dataclass
class Behaviour:
    """How a container of an image behaves: ``ok``, ``crash`` (exits with ``log`` as its last
    output), ``unready`` (runs, readiness probe answers 503), ``pull`` (image cannot be pulled)."""

    kind: str = "ok"
    log: tuple[str, ...] = ()


@dataclass
class Controllers:
    store: Store
    behaviour_of: Callable[[dict[str, Any]], Behaviour]
    ready_delay: float = 0.02
    time_scale: float = 1.0
    fail_next: str | None = None
    born: dict[str, float] = field(default_factory=dict)  # pod uid -> start time
    progress: dict[str, float] = field(default_factory=dict)  # deployment uid -> last progress
    best: dict[str, int] = field(default_factory=dict)  # deployment uid -> most pods available
    rs_failure: dict[str, Behaviour] = field(default_factory=dict)  # rs uid -> injected failure
    logs: dict[str, list[str]] = field(default_factory=dict)  # pod name -> previous run's log
    seen_events: set[tuple[str, str]] = field(default_factory=set)
    counter: int = 0

    # -- garbage collection ---------------------------------------------------------------

    def collect(self, kind: str, owner_uid: str) -> None:
        """Delete what ``owner_uid`` owns (recursively), as the garbage collector does."""
        child = {"Deployment": "ReplicaSet", "ReplicaSet": "Pod"}.get(kind)
        if child is None:
            return
        for obj in self.store.items(child):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                self.store.remove(child, obj["metadata"]["namespace"], obj["metadata"]["name"])
                self.collect(child, obj["metadata"]["uid"])

    # -- reconcile ------------------------------------------------------------------------

    def reconcile(self, now: float) -> None:
        for hpa in self.store.items("HorizontalPodAutoscaler"):
            self._autoscaler(hpa)
        for dep in self.store.items("Deployment"):
            self._deployment(dep, now)
        for svc in self.store.items("Service"):
            if svc["spec"].get("type") == "LoadBalancer" and not svc.get("status", {}).get(
                    "loadBalancer", {}).get("ingress"):
                self.store.patch("Service", svc["metadata"]["namespace"], svc["metadata"]["name"],
                                 {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})

    def _autoscaler(self, hpa: dict[str, Any]) -> None:
        """The HPA controller's bounds (no metrics here): a scale target below minReplicas is
        scaled up to it, one above maxReplicas down to it; 0 replicas means autoscaling is off
        for it (as the real controller treats it)."""
        spec, ns = hpa["spec"], hpa["metadata"]["namespace"]
        ref = spec.get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment":
            return
        dep = next((d for d in self.store.items("Deployment", ns)
                    if d["metadata"]["name"] == ref.get("name")), None)
        if dep is None:
            return
        current = int(dep["spec"].get("replicas", 1))
        lo, hi = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        if current and not lo <= current <= hi:
            self.store.patch("Deployment", ns, ref["name"],
                             {"spec": {"replicas": min(max(current, lo), hi)}})

    def _owned(self, kind: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = owner["metadata"]["uid"]
        return [o for o in self.store.items(kind, owner["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _deployment(self, dep: dict[str, Any], now: float) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns, uid = meta["namespace"], meta["uid"]
        template = spec["template"]
        digest = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        sets = self._owned("ReplicaSet", dep)
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in sets]
        top = max(revisions, default=0)
        new = next((rs for rs in sets if rs["metadata"]["labels"].get(HASH) == digest), None)
        if new is None:
            new = self._new_replicaset(dep, digest, top + 1)
            self.progress[uid] = now
            self.best[uid] = 0
        elif int(new["metadata"]["annotations"][REVISION]) < top:  # a rollback to this template
            self._set(new, {"metadata": {"annotations": {REVISION: str(top + 1)}}})
            self.progress[uid] = now
            self.best[uid] = 0
        revision = new["metadata"]["annotations"][REVISION]
        desired = int(spec.get("replicas", 1))
        self._set(new, {"spec": {"replicas": desired}})
        new_available = self._sync_pods(new, now)
        remaining = max(0, desired - new_available)
        olds = sorted((rs for rs in self._owned("ReplicaSet", dep)
                       if rs["metadata"]["uid"] != new["metadata"]["uid"]),
                      key=lambda rs: -int(rs["metadata"]["annotations"][REVISION]))
        total = updated = len(self._pods(new))
        available = new_available
        for rs in olds:
            keep = min(int(rs["spec"].get("replicas", 0)), remaining)
            remaining -= keep
            self._set(rs, {"spec": {"replicas": keep}})
            available += self._sync_pods(rs, now)
            total += len(self._pods(rs))
        if new_available > self.best.get(uid, 0):
            self.best[uid] = new_available
            self.progress[uid] = now
        complete = updated == desired and total == desired and new_available == desired
        deadline = float(spec.get("progressDeadlineSeconds", 600)) * self.time_scale
        if complete:
            progressing = ("True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.')
        elif now - self.progress.get(uid, now) > deadline:
            progressing = ("False", "ProgressDeadlineExceeded",
                           f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated",
                           f'ReplicaSet "{new["metadata"]["name"]}" is progressing.')
        conditions = [
            _condition("Available", "True" if available >= desired else "False",
                       "MinimumReplicasAvailable" if available >= desired
                       else "MinimumReplicasUnavailable", "Deployment has minimum availability."),
            _condition("Progressing", *progressing),
        ]
        status = {"observedGeneration": meta.get("generation", 1), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": available,
                  "availableReplicas": available,
                  "unavailableReplicas": max(0, desired - available), "conditions": conditions}
        self.store.patch("Deployment", ns, meta["name"],
                         {"metadata": {"annotations": {REVISION: revision}}, "status": status})

    def _set(self, obj: dict[str, Any], patch: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.store.patch(obj["kind"], meta["namespace"], meta["name"], patch)
        for key, value in patch.items():
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    if isinstance(v2, dict):
                        obj.setdefault(key, {}).setdefault(k2, {}).update(v2)
                    else:
                        obj.setdefault(key, {})[k2] = v2

    def _new_replicaset(self, dep: dict[str, Any], digest: str, revision: int) -> dict[str, Any]:
        meta = dep["metadata"]
        template = json.loads(json.dumps(dep["spec"]["template"]))
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH] = digest
        selector = {**dep["spec"]["selector"].get("matchLabels", {}), HASH: digest}
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{meta['name']}-{digest}", "namespace": meta["namespace"],
                           "uid": str(uuid.uuid4()), "labels": dict(template["metadata"]["labels"]),
                           "annotations": {REVISION: str(revision)},
                           "ownerReferences": [_owner(dep)]},
              "spec": {"replicas": 0, "selector": {"matchLabels": selector},
                       "template": template}}
        if self.fail_next:
            self.rs_failure[rs["metadata"]["uid"]] = Behaviour("crash", (self.fail_next,))
            self.fail_next = None
        self.store.put(rs)
        return rs

    def _pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        return self._owned("Pod", rs)

    def _sync_pods(self, rs: dict[str, Any], now: float) -> int:
        """Create/delete pods to the ReplicaSet's count, update their states; return how many
        are available."""
        pods = self._pods(rs)
        want = int(rs["spec"].get("replicas", 0))
        for _ in range(want - len(pods)):
            self.counter += 1
            suffix = hashlib.sha1(f"{rs['metadata']['uid']}{self.counter}".encode()).hexdigest()
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{rs['metadata']['name']}-{suffix[:5]}",
                                "namespace": rs["metadata"]["namespace"],
                                "uid": str(uuid.uuid4()),
                                "labels": dict(rs["spec"]["template"]["metadata"]["labels"]),
                                "annotations": dict(rs["spec"]["template"]["metadata"].get(
                                    "annotations", {})),
                                "ownerReferences": [_owner(rs)]},
                   "spec": rs["spec"]["template"]["spec"], "status": {"phase": "Pending"}}
            self.born[pod["metadata"]["uid"]] = now
            self.store.put(pod)
            pods.append(pod)
        if len(pods) > want:
            pods.sort(key=lambda p: (p.get("status", {}).get("conditions") is not None,
                                     p["metadata"]["name"]))
            for pod in pods[: len(pods) - want]:
                self.store.remove("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
            pods = pods[len(pods) - want:]
        behaviour = self.rs_failure.get(rs["metadata"]["uid"])
        return sum(self._pod_state(p, behaviour, now) for p in pods)

    def _pod_state(self, pod: dict[str, Any], injected: Behaviour | None, now: float) -> bool:
        meta = pod["metadata"]
        age = now - self.born.get(meta["uid"], now)
        c = pod["spec"]["containers"][0]
        how = injected or self.behaviour_of(pod)
        settled = age >= self.ready_delay
        ready, restarts = False, 0
        state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        last: dict[str, Any] = {}
        phase = "Running"
        if not settled:
            state = {"waiting": {"reason": "ContainerCreating"}}
            phase = "Pending"
        elif how.kind == "pull":
            phase = "Pending"
            reason = "ImagePullBackOff" if age >= FATAL_AFTER * self.ready_delay else "ErrImagePull"
            state = {"waiting": {"reason": reason, "message": f'Back-off pulling image '
                                                             f'"{c["image"]}"'}}
            self._event(pod, "Warning", "Failed", f'Failed to pull image "{c["image"]}": rpc '
                        f'error: code = NotFound desc = failed to pull and unpack image '
                        f'"{c["image"]}": not found')
        elif how.kind == "crash":
            restarts = 1 + int(age / max(self.ready_delay, 1e-3))
            state = {"waiting": {"reason": "CrashLoopBackOff",
                                 "message": f"back-off 10s restarting failed container="
                                            f"{c['name']} pod={meta['name']}"}}
            last = {"terminated": {"exitCode": 1, "reason": "Error"}}
            self.logs[meta["name"]] = list(how.log)
            self._event(pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {c['name']} in pod {meta['name']}")
        elif how.kind == "unready":
            self._event(pod, "Warning", "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503")
        else:
            ready = True
            self._event(pod, "Normal", "Started", f"Started container {c['name']}")
        cond = [_condition("Ready", "True" if ready else "False", "" if ready else
                           "ContainersNotReady", "")]
        status = {"phase": phase, "conditions": cond, "containerStatuses": [
            {"name": c["name"], "image": c["image"], "ready": ready, "restartCount": restarts,
             "started": ready, "state": state, "lastState": last}]}
        self.store.patch("Pod", meta["namespace"], meta["name"], {"status": status})
        pod["status"] = status
        return ready

    def _event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        if (meta["uid"], reason) in self.seen_events:
            return
        self.seen_events.add((meta["uid"], reason))
        self.counter += 1
        self.store.put({"apiVersion": "v1", "kind": "Event",
                        "metadata": {"name": f"{meta['name']}.{self.counter:x}",
                                     "namespace": meta["namespace"], "uid": str(uuid.uuid4())},
                        "involvedObject": {"kind": "Pod", "name": meta["name"],
                                           "namespace": meta["namespace"], "uid": meta["uid"]},
                        "type": type_, "reason": reason, "message": message, "count": 1})


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "controller": True}


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


__all__ = ["Behaviour", "Controllers", "Store"]
