"""``replace`` for the Kubernetes target: converge every object the config describes, as one
transaction.

Order: the PDB/HPA/Service deletions (an HPA must be gone before the Deployment's replica
count becomes the config's), their creations and updates, then the Deployment's patch and its
watched rollout (maxUnavailable 0: the old pods serve until new ones are ready). If any step or
the rollout fails or times out, the Deployment is patched back and its rollout awaited, the
ReplicaSet the failed rollout made is deleted, and every other object is restored to its
previous labels, annotations and spec (created ones deleted, deleted ones created again) -
each change having been recorded in the core's transaction with its undo. Functions over a
``Kube`` client and the config; the target calls them from its hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mldeploy.errors import DeploymentFailedError, DeploymentTimeoutError
from mldeploy.plugins.kubernetes import _checks, _converge, _ops
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes._converge import Step
from mldeploy.plugins.kubernetes._ops import (
    leftover_hint,
    merge_patch,
    owned_replicasets,
    resource,
    rid,
    view,
    watch,
)
from mldeploy.plugins.kubernetes.config import KubernetesConfig
from mldeploy.plugins.kubernetes.errors import ApiError, Unreachable
from mldeploy.target import Action, Resource, Status
from mldeploy.transaction import Transaction

Say = Callable[..., None]
_VERB = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


def replace_steps(kube: Kube, config: KubernetesConfig, name: str, stable: dict[str, Any],
                  model: mf.Model) -> list[Step]:
    """What a replace with ``model`` and ``config`` changes: the Deployment first, then the
    PDB, HPA and Service (missing ones the config does not ask for are left out)."""
    desired = mf.create_set(config, name, kube.namespace, model)
    _checks.check(desired)
    steps = _converge.steps(kube, name, stable, desired, replicas=not config.autoscale)
    dep = steps[0]
    if dep.action is Action.UPDATE:
        steps[0] = Step(dep.action, dep.kind, dep.name, dep.live, dep.desired, dep.patch,
                        _deployment_detail(dep, model))
    return steps


def converge(kube: Kube, config: KubernetesConfig, name: str, steps: list[Step], *,
             tx: Transaction, say: Say) -> None:
    """Apply ``steps`` (from :func:`replace_steps`) in ``tx`` (module doc). An API error of a
    step propagates: the core's transaction undoes the steps before it."""
    # An HPA this replace creates scales the Deployment at once: if the replace is undone (the
    # HPA deleted again) the count must go back to the fixed one it had - recorded first, so
    # it is undone after the HPA is gone.
    hpa_new = any(s.kind == "HorizontalPodAutoscaler" and s.action is Action.CREATE
                  for s in steps)
    if hpa_new and steps[0].live is not None:
        count = steps[0].live["spec"].get("replicas")
        tx.record(resource("Deployment", kube.namespace, name),
                  lambda: kube.patch("Deployment", name, {"spec": {"replicas": count}}))
    for s in sorted(steps[1:], key=lambda s: s.order):
        if s.action is Action.DELETE:
            assert s.live is not None
            _ops.delete(tx, kube, s.kind, s.live)
        elif s.action is Action.CREATE:
            assert s.desired is not None
            _ops.create(tx, kube, s.desired)
        elif s.action is Action.UPDATE:
            assert s.live is not None
            _ops.update(tx, kube, s.kind, s.live, s.patch)
        else:
            continue
        say(f"{_VERB[s.action]} {rid(s.kind, kube.namespace, s.name)}"
            + (f" ({s.detail})" if s.detail else ""), Status.UPDATING)
    roll(kube, config, name, steps[0], tx=tx, say=say)


def roll(kube: Kube, config: KubernetesConfig, name: str, step: Step, *, tx: Transaction,
         say: Say) -> None:
    """Patch Deployment ``name`` as ``step`` says and watch the rollout (``tx.wait``,
    ``tx.timeout``); on failure patch it back, wait, delete the failed ReplicaSet and undo
    ``tx``, then raise."""
    if step.action is Action.KEEP:
        say(f"{name} already runs this model"
            + (" (other objects updated)" if tx.records else ""), Status.READY)
        return
    before = step.live
    assert before is not None
    sets_before = owned_replicasets(kube, before)
    kube.patch("Deployment", name, step.patch)
    say(f"rolling out a new revision of {name}" if "template" in (
        step.patch.get("spec") or {}) else f"updating {name} ({step.detail})", Status.UPDATING)
    if not tx.wait:
        return
    limit = tx.timeout or config.timeout_seconds
    outcome = watch(kube, name, timeout=limit, poll=config.poll_interval_seconds,
                    log_lines=config.log_lines, say=say)
    if outcome.ok:
        return
    say(f"rollout of {name} failed; rolling back", Status.UPDATING)
    replicas = "replicas" in (step.patch.get("spec") or {})
    cleaned, leftover = _roll_back(kube, config, name, before, sets_before, limit, replicas,
                                   say)
    undone, left = tx.rollback()
    leftover += left
    hint = "rolled back: the previous model is still serving" + (
        ", with its previous objects restored" if undone else "")
    if leftover:
        hint = (leftover_hint(leftover, "check and restore")
                + f" (kubectl rollout status deployment/{name})")
    cls = DeploymentTimeoutError if outcome.timed_out else DeploymentFailedError
    raise cls(f"{tx.verb} of {name} failed: {outcome.reason}",
              cleaned=cleaned + undone, leftover=leftover, hint=hint)  # type: ignore[arg-type]


def _roll_back(kube: Kube, config: KubernetesConfig, name: str, before: dict[str, Any],
               sets_before: dict[str, str], limit: float, replicas: bool,
               say: Say) -> tuple[list[Resource], list[Resource]]:
    try:
        current = kube.get("Deployment", name) or before
        kube.patch("Deployment", name, merge_patch(view(current, replicas=replicas),
                                                   view(before, replicas=replicas)))
        back = watch(kube, name, timeout=limit, poll=config.poll_interval_seconds,
                     log_lines=0, say=say)
    except (ApiError, Unreachable):
        return [], [resource("Deployment", kube.namespace, name)]
    if not back.ok:
        return [], [resource("Deployment", kube.namespace, name)]
    cleaned = []
    now = kube.get("Deployment", name) or before
    for rs in sorted(set(owned_replicasets(kube, now)) - set(sets_before)):
        if kube.delete("ReplicaSet", rs):
            cleaned.append(resource("ReplicaSet", kube.namespace, rs))
    return cleaned, []


def _deployment_detail(dep: Step, model: mf.Model) -> str:
    """The Deployment's change: the model version (or, the same version with other files, its
    digest) and image if they change (then the other fields outside the pod template), else the
    changed fields."""
    assert dep.live is not None
    template = dep.live["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    old_version, old_digest = labels.get(mf.VERSION), labels.get(mf.MODEL_DIGEST)
    new_digest = mf.digest_label(model.digest) if model.digest else None
    old_image = template["spec"]["containers"][0].get("image")
    if (old_version, old_digest, old_image) == (model.version, new_digest, model.image):
        return dep.detail
    rest = {**dep.patch, "spec": {k: v for k, v in (dep.patch.get("spec") or {}).items()
                                  if k != "template"}}
    rest = {k: v for k, v in rest.items() if v}
    also = _converge.describe(view(dep.live, replicas=True), rest)
    if old_version != model.version:
        what = f"model version {old_version} -> {model.version}"
    elif old_digest != new_digest:
        what = (f"model version {model.version}, other files (digest "
                f"{(old_digest or '(unset)')[:12]} -> {(new_digest or '(unset)')[:12]})")
    else:
        what = f"model version {model.version}"
    return f"{what}, image {model.image}" + (f"; {also}" if also else "")


__all__ = ["converge", "replace_steps", "roll"]
