"""An in-memory target: the reference implementation of :class:`mldeploy.target.Target`.

It keeps deployments in a :class:`MemoryBackend` handed in as ``clients`` (so a test can look at
and break the "cloud" behind the target) and answers ``invoke`` with one prediction per input row:
the short content hash of the model that served it, so tests can see which model answered.
It passes the conformance suite and is the smallest example of a target to copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mldeploy.errors import (
    DeploymentExistsError,
    DeploymentNotFoundError,
    InvocationError,
    UsageError,
)
from mldeploy.target import (
    Action,
    Capability,
    Change,
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    Resource,
    Status,
    Target,
    Variant,
)
from mldeploy.transaction import StepFailed, Transaction


@dataclass(frozen=True)
class MemoryConfig:
    variant_name: str = field(default="primary", metadata={"help": "name of the first variant"})
    initial_weight: float = field(default=1.0, metadata={"min": 0.0, "help": "weight for add"})
    replicas: int = field(default=1, metadata={"min": 1, "max": 10})


@dataclass
class MemoryBackend:
    """The state behind :class:`MemoryTarget`: ``deployments[name][variant] = (model_uri, model_id,
    weight)``, ``models`` the model ids present, and failure injection for the next deploy."""

    deployments: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    fail_next: str | None = None

    def inventory(self) -> set[str]:
        return {f"deployment:{n}" for n in self.deployments} | {f"model:{m}" for m in self.models}


def _model_id(name: str, model_uri: str) -> str:
    from mldeploy.model_uri import materialize

    h = hashlib.sha256()
    with materialize(model_uri) as path:  # a download is removed again
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return f"{name}-{h.hexdigest()[:8]}"


class MemoryTarget(Target):
    name = "memory"
    config_class = MemoryConfig
    capabilities = frozenset({Capability.ADD, Capability.TRAFFIC, Capability.VARIANT_INVOKE})
    timeout_setting = None

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if self.clients is None:
            self.clients = MemoryBackend()
        self.backend: MemoryBackend = self.clients

    def _variants(self, name: str) -> dict[str, list[Any]]:
        try:
            return self.backend.deployments[name]
        except KeyError:
            raise DeploymentNotFoundError(
                f"no deployment {name!r} on {self.name}", hint="mldeploy list shows what exists"
            ) from None

    def _make_model(self, tx: Transaction, model_uri: str) -> str:
        """The model's id, recorded in ``tx`` when this run adds it; then any injected
        failure."""
        mid = _model_id(tx.name, model_uri)
        if mid not in self.backend.models:
            self.backend.models.add(mid)
            tx.record(Resource("model", f"model:{mid}"),
                      lambda: self.backend.models.discard(mid))
        reason, self.backend.fail_next = self.backend.fail_next, None
        if reason:
            raise StepFailed(reason)
        return mid

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        if name in self.backend.deployments:
            raise DeploymentExistsError(f"deployment {name!r} already exists",
                                        hint="use --mode replace to change its model")
        mid = self._make_model(tx, model_uri)
        self.backend.deployments[name] = {self.config.variant_name: [model_uri, mid, 1.0]}
        self.progress(f"{name} is ready", Status.READY)
        return self.get(name)

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        variants = self._variants(name)
        if len(variants) != 1:
            raise UsageError(f"{name!r} has {len(variants)} variants; replace needs one",
                             hint="use traffic to move all weight to one variant first")
        (vname, (old_uri, old_id, weight)), = variants.items()
        mid = self._make_model(tx, model_uri)
        variants[vname] = [model_uri, mid, weight]
        if old_id != mid:
            self.backend.models.discard(old_id)
        return self.get(name)

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        variants = self._variants(name)
        vname = f"{self.config.variant_name}-{len(variants) + 1}"
        mid = self._make_model(tx, model_uri)
        variants[vname] = [model_uri, mid, self.config.initial_weight]
        return self.get(name)

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        variants = self.backend.deployments.pop(name, None)
        if variants is None:
            return Deletion(name, self.name, existed=False)
        removed = [Resource("deployment", f"deployment:{name}")]
        for _, mid, _ in variants.values():
            self.backend.models.discard(mid)
            removed.append(Resource("model", f"model:{mid}"))
        return Deletion(name, self.name, existed=True, removed=tuple(removed))

    def _get(self, name: str) -> Deployment:
        variants = self._variants(name)
        vs = tuple(Variant(v, w, uri, self.config.replicas) for v, (uri, _, w) in variants.items())
        resources = (Resource("deployment", f"deployment:{name}"),
                     *(Resource("model", f"model:{mid}") for _, mid, _ in variants.values()))
        return Deployment(name, self.name, Status.READY, url=f"memory://{name}",
                          model_uri=vs[0].model_uri, resources=resources, variants=vs)

    def _list(self) -> list[Deployment]:
        return [self.get(n) for n in sorted(self.backend.deployments)]

    def _invoke(self, name: str, body: bytes, content_type: str,
                variant: str | None) -> Prediction:
        variants = self._variants(name)
        if variant is not None and variant not in variants:
            raise InvocationError(f"{name!r} has no variant {variant!r}", status=400,
                                  hint=f"variants: {', '.join(variants)}")
        vname = variant or max(variants, key=lambda v: variants[v][2])
        try:
            payload = json.loads(body)
            rows = _row_count(payload)
        except (ValueError, KeyError, TypeError):
            raise InvocationError("the request body is not a valid scoring request", status=400,
                                  error_code="BAD_REQUEST") from None
        out = json.dumps({"predictions": [variants[vname][1]] * rows}).encode()
        return Prediction.from_response(out, "application/json", variant=vname)

    def _traffic(self, name: str, weights: dict[str, float], *, wait: bool,
                 timeout: float) -> Deployment:
        variants = self._variants(name)
        unknown = set(weights) - set(variants)
        if unknown:
            raise UsageError(f"{name!r} has no variant {sorted(unknown)[0]!r}",
                             hint=f"variants: {', '.join(variants)}")
        for v, w in weights.items():
            variants[v][2] = float(w)
        return self.get(name)

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        mid = _model_id(name, model_uri)
        exists = name in self.backend.deployments
        if mode is DeployMode.CREATE and exists:
            raise DeploymentExistsError(f"deployment {name!r} already exists")
        if mode is not DeployMode.CREATE and not exists:
            raise DeploymentNotFoundError(f"no deployment {name!r} on {self.name}")
        changes = [Change(Action.CREATE, Resource("model", f"model:{mid}"))]
        dep = Resource("deployment", f"deployment:{name}")
        if mode is DeployMode.CREATE:
            changes.append(Change(Action.CREATE, dep))
        else:
            changes.append(Change(Action.UPDATE, dep))
            if mode is DeployMode.REPLACE:
                for _, old, _ in self.backend.deployments[name].values():
                    if old != mid:
                        changes.append(Change(Action.DELETE, Resource("model", f"model:{old}")))
        return Plan(self.name, name, mode, tuple(changes))


def _row_count(payload: Any) -> int:
    if isinstance(payload, dict):
        for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
            if key in payload:
                inner = payload[key]
                return len(inner["data"] if key == "dataframe_split" else inner)
        raise KeyError("no input key")
    if isinstance(payload, list):
        return len(payload)
    raise TypeError(type(payload).__name__)


__all__ = ["MemoryBackend", "MemoryConfig", "MemoryTarget"]
