"""What ``replace`` changes: each object the config describes (the stable Deployment, PDB, HPA,
Service) against the live one, as a :class:`Step` - KEEP, UPDATE (with the merge patch), CREATE,
or DELETE (an object the config no longer asks for: ``-C autoscale=false`` drops the HPA).

The live object is compared on what mldeploy sets, so fields the API server fills in or leaves
out (a Service's ``clusterIP`` and node ports, a pod template's ``dnsPolicy``, canonical
quantities such as ``500m`` for ``0.5``, ``minReadySeconds: 0``) are neither differences nor
patched away, while a setting the
config dropped (a label, ``node_selector``, ``cpu_limit``) is removed. Labels and annotations of
mldeploy's objects are the config's, except those of controllers and kubectl
(``deployment.kubernetes.io/``, ``kubectl.kubernetes.io/``). Reads only; nothing is changed
here.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.errors import DeploymentExistsError
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._checks import parse_quantity
from mldeploy.plugins.kubernetes._client import Kube
from mldeploy.plugins.kubernetes._ops import merge_patch, rid, view
from mldeploy.target import Action, Change, Resource

SIDE_KINDS = ("PodDisruptionBudget", "HorizontalPodAutoscaler", "Service")
_T = ("spec", "template")
_C = (*_T, "spec", "containers", "*")
# Where every live key counts (a key the config no longer sets is a difference).
_FULL = {("metadata", "labels"), ("metadata", "annotations"), ("spec", "selector"),
         (*_T, "metadata", "labels"), (*_T, "metadata", "annotations"),
         (*_T, "spec", "nodeSelector"), (*_C, "resources", "requests"),
         (*_C, "resources", "limits")}
# Keys mldeploy sets only for some configs: a live one the desired object lacks is removed.
_OPTIONAL = {(*_T, "spec"): {"serviceAccountName", "serviceAccount", "imagePullSecrets",
                             "nodeSelector"},
             _C: {"lifecycle", "resources"}, (*_C, "resources"): {"requests", "limits"}}
_QUANTITIES = {(*_C, "resources", "requests"), (*_C, "resources", "limits"),
               (*_T, "spec", "volumes", "*", "emptyDir")}
# Fields the API server leaves out of its answers when zero (Go ``omitempty``, not pointers).
_ZERO_OMITTED = {("spec", "minReadySeconds")}
_MAX_DETAIL = 4


class Order(int, enum.Enum):
    """When a step is applied in a replace: deletions first (an HPA must be gone before the
    Deployment's replica count is set), then creations and updates, then the rollout."""

    DELETE = 0
    APPLY = 1


@dataclass(frozen=True)
class Step:
    """One object's change: ``live`` as read (None: missing), ``desired`` (None: not asked
    for), ``patch`` the merge patch from live to desired (UPDATE only)."""

    action: Action
    kind: str
    name: str
    live: dict[str, Any] | None
    desired: dict[str, Any] | None
    patch: dict[str, Any]
    detail: str = ""

    def change(self, namespace: str) -> Change:
        return Change(self.action, Resource(self.kind.lower(), rid(self.kind, namespace,
                                                                     self.name)), self.detail)

    @property
    def order(self) -> Order:
        return Order.DELETE if self.action is Action.DELETE else Order.APPLY


def project(live: Any, desired: Any, path: tuple[str, ...] = (), full: bool = False) -> Any:
    """``live`` cut down to what mldeploy sets at ``path`` (``desired``'s keys, the optional
    ones, every key where all count), quantities equal to the desired ones spelled as those."""
    full = full or path in _FULL
    if isinstance(live, Mapping):
        want = desired if isinstance(desired, Mapping) else {}
        keep = None if full or not isinstance(desired, Mapping) else (
            set(want) | _OPTIONAL.get(path, set()))
        out = {k: project(v, want.get(k), (*path, k), full) for k, v in live.items()
               if keep is None or k in keep}
        out.update({k: v for k, v in want.items()
                    if (*path, k) in _ZERO_OMITTED and k not in live and v == 0})
        if path in _QUANTITIES:
            out = {k: want[k] if _same_quantity(v, want.get(k)) else v for k, v in out.items()}
        return out
    if isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired):
        return [project(lv, dv, (*path, "*"), full)
                for lv, dv in zip(live, desired, strict=True)]
    return live


def _mirrored(want: dict[str, Any]) -> dict[str, Any]:
    """A pod template's deprecated ``serviceAccount`` set as the API server mirrors it from
    ``serviceAccountName``: left behind alone, the server would restore the name from it."""
    want = copy.deepcopy(want)
    pod = ((want.get("spec") or {}).get("template") or {}).get("spec")
    if isinstance(pod, dict) and pod.get("serviceAccountName"):
        pod["serviceAccount"] = pod["serviceAccountName"]
    return want


def _same_quantity(a: Any, b: Any) -> bool:
    if a == b or not isinstance(a, (str, int)) or not isinstance(b, (str, int)):
        return a == b
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False


def step(kind: str, name: str, live: Mapping[str, Any] | None,
         desired: Mapping[str, Any] | None, *, replicas: bool = False) -> Step:
    """The step that takes ``live`` to ``desired`` (at least one of them given; ``replicas``:
    the Deployment's replica count is the config's, not the HPA's)."""
    if live is None:
        return Step(Action.CREATE, kind, name, None, dict(desired or {}), {}, "newly asked for")
    if desired is None:
        return Step(Action.DELETE, kind, name, dict(live), None, {}, "no longer asked for")
    want = _mirrored(view(desired, kind=kind, replicas=replicas))
    have = project(view(live, kind=kind, replicas=replicas), want)
    patch = merge_patch(have, want)
    action = Action.UPDATE if patch else Action.KEEP
    return Step(action, kind, name, dict(live), dict(desired), patch, describe(have, patch))


def describe(old: Mapping[str, Any], patch: Mapping[str, Any]) -> str:
    """The patched fields, ``path: old -> new`` for plain values (a few, then a count)."""
    lines = []
    for path, new in _leaves(patch):
        before: Any = old
        for part in path:
            before = before.get(part) if isinstance(before, Mapping) else None
        shown = ".".join(path)
        if isinstance(before, (dict, list)) or isinstance(new, (dict, list)):
            lines.append(f"{shown} changed")
        else:
            lines.append(f"{shown}: {_show(before)} -> {_show(new)}")
    more = len(lines) - _MAX_DETAIL
    return "; ".join(lines[:_MAX_DETAIL]) + (f"; and {more} more" if more > 0 else "")


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def _leaves(patch: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                              Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in patch.items():
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, (*path, key)))
        else:
            out.append(((*path, key), value))
    return out


def steps(kube: Kube, name: str, stable: Mapping[str, Any], desired: list[dict[str, Any]], *,
          replicas: bool) -> list[Step]:
    """The replace of deployment ``name``: the stable Deployment's step (``stable`` its live
    object) first, then one per :data:`SIDE_KINDS`. An object of the name that mldeploy did not
    make is refused (DeploymentExistsError), never changed or deleted."""
    by_kind = {o["kind"]: o for o in desired}
    out = [step("Deployment", name, stable, by_kind["Deployment"], replicas=replicas)]
    for kind in SIDE_KINDS:
        live = kube.get(kind, name)
        if live is not None and (live["metadata"].get("labels") or {}).get(
                mf.MANAGED_BY) != "mldeploy":
            raise DeploymentExistsError(
                f"{rid(kind, kube.namespace, name)} exists and was not made by mldeploy",
                hint="remove or rename it; replace changes only mldeploy's objects")
        if live is not None or kind in by_kind:
            out.append(step(kind, name, live, by_kind.get(kind)))
    return out


__all__ = ["SIDE_KINDS", "Order", "Step", "describe", "project", "step", "steps"]
