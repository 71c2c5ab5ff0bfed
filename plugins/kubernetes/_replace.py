"""``replace`` for the Kubernetes target: converge every object the config describes, as one
transaction.

Order: the PDB/HPA/Service deletions (an HPA must be gone before the Deployment's replica
count becomes the config's), their creations and updates, then the Deployment's patch and its
watched rollout (maxUnavailable 0: the old pods serve until new ones are ready). If any step or
the rollout fails or times out, the Deployment is patched back and its rollout awaited, the
ReplicaSet the failed rollout made is deleted, and every other object is restored to its
previous labels, annotations and spec (created ones deleted, deleted ones created again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from mldeploy.errors import DeploymentFailedError, DeploymentTimeoutError
from mldeploy.plugins.kubernetes import _checks, _converge
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes._converge import Step
from mldeploy.plugins.kubernetes._ops import (
    Ledger,
    leftover_hint,
    merge_patch,
    owned_replicasets,
    rid,
    view,
    watch,
)
from mldeploy.plugins.kubernetes.errors import ApiError, Unreachable, translate
from mldeploy.target import Action, Status

if TYPE_CHECKING:
    from mldeploy.plugins.kubernetes.target import KubernetesTarget as _Base
else:
    _Base = object

_VERB = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


class ReplaceMixin(_Base):
    def replace_steps(self, kube: Kube, name: str, stable: dict[str, Any],
                      model: mf.Model) -> list[Step]:
        """What a replace with ``model`` and this config changes: the Deployment first, then
        the PDB, HPA and Service (missing ones the config does not ask for are left out)."""
        desired = mf.create_set(self.config, name, kube.namespace, model)
        _checks.check(desired)
        steps = _converge.steps(kube, name, stable, desired, replicas=not self.config.autoscale)
        dep = steps[0]
        if dep.action is Action.UPDATE:
            steps[0] = Step(dep.action, dep.kind, dep.name, dep.live, dep.desired, dep.patch,
                            _deployment_detail(dep, model))
        return steps

    def converge(self, kube: Kube, name: str, steps: list[Step], *, wait: bool,
                 timeout: float | None) -> None:
        """Apply ``steps`` (from :meth:`replace_steps`) as one transaction (module doc)."""
        ledger = Ledger(kube)
        for s in sorted(steps[1:], key=lambda s: s.order):
            try:
                if s.action is Action.DELETE:
                    assert s.live is not None
                    ledger.delete(s.kind, s.live)
                elif s.action is Action.CREATE:
                    assert s.desired is not None
                    ledger.create(s.desired)
                elif s.action is Action.UPDATE:
                    assert s.live is not None
                    ledger.update(s.kind, s.live, s.patch)
                else:
                    continue
            except (ApiError, Unreachable) as exc:
                self._abort(ledger, exc, name)
            self._say(f"{_VERB[s.action]} {rid(s.kind, kube.namespace, s.name)}"
                      + (f" ({s.detail})" if s.detail else ""), Status.UPDATING)
        self.roll(kube, name, steps[0], ledger=ledger, wait=wait, timeout=timeout)

    def roll(self, kube: Kube, name: str, step: Step, *, ledger: Ledger | None = None,
             wait: bool, timeout: float | None) -> None:
        """Patch Deployment ``name`` as ``step`` says and watch the rollout; on failure patch
        it back, wait, delete the failed ReplicaSet and undo ``ledger``, then raise."""
        ledger = ledger or Ledger(kube)
        if step.action is Action.KEEP:
            self._say(f"{name} already runs this model"
                      + (" (other objects updated)" if ledger.items else ""), Status.READY)
            return
        before = step.live
        assert before is not None
        sets_before = owned_replicasets(kube, before)
        try:
            kube.patch("Deployment", name, step.patch)
        except (ApiError, Unreachable) as exc:
            self._abort(ledger, exc, name)
        self._say(f"rolling out a new revision of {name}" if "template" in (
            step.patch.get("spec") or {}) else f"updating {name} ({step.detail})",
            Status.UPDATING)
        if not wait:
            return
        limit = timeout or self.config.timeout_seconds
        outcome = watch(kube, name, timeout=limit, poll=self.config.poll_interval_seconds,
                        log_lines=self.config.log_lines, say=self._say)
        if outcome.ok:
            return
        self._say(f"rollout of {name} failed; rolling back", Status.UPDATING)
        replicas = "replicas" in (step.patch.get("spec") or {})
        cleaned, leftover = self._roll_back(kube, name, before, sets_before, limit, replicas)
        undone, left = ledger.undo()
        leftover += left
        hint = "rolled back: the previous model is still serving" + (
            ", with its previous objects restored" if undone else "")
        if leftover:
            hint = (leftover_hint(leftover, "check and restore")
                    + f" (kubectl rollout status deployment/{name})")
        cls = DeploymentTimeoutError if outcome.timed_out else DeploymentFailedError
        raise cls(f"replace of {name!r} failed: {outcome.reason}", cleaned=cleaned + undone,
                  leftover=leftover, hint=hint)

    def _roll_back(self, kube: Kube, name: str, before: dict[str, Any],
                   sets_before: dict[str, str], limit: float,
                   replicas: bool) -> tuple[list[str], list[str]]:
        try:
            current = kube.get("Deployment", name) or before
            kube.patch("Deployment", name, merge_patch(view(current, replicas=replicas),
                                                       view(before, replicas=replicas)))
            back = watch(kube, name, timeout=limit, poll=self.config.poll_interval_seconds,
                         log_lines=0, say=self._say)
        except (ApiError, Unreachable):
            return [], [rid("Deployment", kube.namespace, name)]
        if not back.ok:
            return [], [rid("Deployment", kube.namespace, name)]
        cleaned = []
        now = kube.get("Deployment", name) or before
        for rs in sorted(set(owned_replicasets(kube, now)) - set(sets_before)):
            if kube.delete("ReplicaSet", rs):
                cleaned.append(rid("ReplicaSet", kube.namespace, rs))
        return cleaned, []

    def _abort(self, ledger: Ledger, exc: ApiError | Unreachable, name: str) -> NoReturn:
        """A step was refused: undo the ones before it and raise the API's error (with what
        could not be undone, if anything)."""
        _, leftover = ledger.undo()
        err = translate(exc, f"replace {name}")
        if leftover:
            raise DeploymentFailedError(str(err), leftover=leftover,
                                        hint=leftover_hint(leftover, "check and restore"))
        raise err from None


def _deployment_detail(dep: Step, model: mf.Model) -> str:
    """The Deployment's change: the model version and image if they change (then the other
    fields outside the pod template), else the changed fields."""
    assert dep.live is not None
    template = dep.live["spec"]["template"]
    old_version = template["metadata"].get("labels", {}).get(mf.VERSION)
    old_image = template["spec"]["containers"][0].get("image")
    if (old_version, old_image) == (model.version, model.image):
        return dep.detail
    rest = {**dep.patch, "spec": {k: v for k, v in (dep.patch.get("spec") or {}).items()
                                  if k != "template"}}
    rest = {k: v for k, v in rest.items() if v}
    also = _converge.describe(view(dep.live, replicas=True), rest)
    return (f"model version {old_version} -> {model.version}, image {model.image}"
            + (f"; {also}" if also else ""))


__all__ = ["ReplaceMixin"]
