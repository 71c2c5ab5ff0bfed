"""The Azure ML target: managed online endpoints (the SDK calls are in ``_client``/``_ops``, the
entities in ``_specs``, traffic arithmetic in ``_traffic``, errors translated in ``errors``).

- ``create``: the endpoint, the model registered as an ``mlflow_model`` asset, one deployment
  (``blue``) running the serving image as a custom container, 100 % traffic - each recorded in
  the core's transaction, so a failure removes all of it;
- ``replace`` is blue/green: a new deployment beside the live one at 0 %, optional mirrored
  traffic, then traffic shifted in ``traffic_steps`` with the new deployment's health checked
  between steps, then the old deployment deleted. Any failure (provisioning, probes, a step,
  Ctrl-C) puts the traffic back, deletes the new deployment and the model version it
  registered, and reports the tail of the new container's log;
- ``add`` a second deployment at ``add_percent``; ``traffic`` sets weights (whole percents
  summing to 100, names as Azure stores them, zero weights kept in the result);
- ``delete`` removes the endpoint (Azure deletes its deployments) and the model versions
  mldeploy registered for it; idempotent.
"""

from __future__ import annotations

from typing import Any

from mldeploy.errors import DeploymentExistsError, DeploymentNotFoundError, UsageError
from mldeploy.plugins.azureml import _ops
from mldeploy.plugins.azureml import _specs as sp
from mldeploy.plugins.azureml import _traffic as tr
from mldeploy.plugins.azureml._client import MANAGED_BY, MODEL_URI, Clients, connect, post_json
from mldeploy.plugins.azureml.config import ENDPOINT_NAME, AzureMLConfig, EnvironmentKind
from mldeploy.plugins.azureml.errors import azure_errors, scrub
from mldeploy.target import (
    Action,
    Capability,
    Change,
    Deletion,
    Deployment,
    DeployMode,
    NameRule,
    Plan,
    Prediction,
    Resource,
    Status,
    Target,
    Variant,
)
from mldeploy.transaction import Transaction

NAME_RULE = NameRule(pattern=ENDPOINT_NAME, max_length=32,
                     hint="3-32 letters, digits and '-', starting with a letter (Azure ML's rule "
                          "for online endpoints)",
                     what="Azure ML online endpoint name")
COLOURS = ("blue", "green", "gold", "teal", "plum", "sage")

_STATE = {"succeeded": Status.READY, "creating": Status.CREATING, "updating": Status.UPDATING,
          "deleting": Status.DELETING, "failed": Status.FAILED, "canceled": Status.FAILED}


class AzureMLTarget(Target):
    name = "azureml"
    config_class = AzureMLConfig
    config: AzureMLConfig
    capabilities = frozenset({Capability.ADD, Capability.TRAFFIC, Capability.VARIANT_INVOKE})
    name_rule = NAME_RULE

    # -- connection ---------------------------------------------------------------------------

    def _where(self) -> tuple[str, str, str]:
        parts = [p for p in (self.location or "").strip("/").split("/") if p]
        cfg = self.config
        sub = parts[0] if parts else cfg.subscription_id
        rg = parts[1] if len(parts) > 1 else cfg.resource_group
        ws = parts[2] if len(parts) > 2 else cfg.workspace
        if not (sub and rg and ws):
            raise UsageError("no Azure ML workspace given",
                             hint="use -t azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE (or "
                                  "-C subscription_id= -C resource_group= -C workspace=)")
        return sub, rg, ws

    def _clients(self) -> Clients:
        if not isinstance(self.clients, Clients):
            if self.clients is not None:  # an MLClient handed in
                self.clients = Clients(ml_client=self.clients)
            else:
                sub, rg, ws = self._where()
                with azure_errors("connect to Azure ML"):
                    self.clients = connect(sub, rg, ws, self.config.cloud and
                                           self.config.cloud.value)
        return self.clients

    def ops(self) -> _ops.Ops:
        return _ops.Ops(self._clients(), self.config, self.progress)

    # -- create / replace / add ---------------------------------------------------------------

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        ops = self.ops()
        with azure_errors(f"create {name}"):
            existing = ops.endpoint(name)
            if existing is not None:
                ours = (existing.tags or {}).get(MANAGED_BY) == "mldeploy"
                raise DeploymentExistsError(
                    f"online endpoint {name!r} already exists"
                    + ("" if ours else " and was not made by mldeploy"),
                    hint="use --mode replace to change its model" if ours
                    else "choose another name")
            image, model = ops.prepare(tx, name, model_uri)
            ep = ops.create_endpoint(tx, name)
            first = (self.config.variant_name or COLOURS[0]).lower()
            ops.create_deployment(tx, ep, first, model, image, model_uri, seq=1)
            ops.set_traffic(name, {first: 100}, {})
            self.progress(f"{name} is ready", Status.READY)
            return self._get(name)

    def _live(self, ops: _ops.Ops, name: str) -> tuple[Any, list[Any]]:
        ep = ops.endpoint(name)
        if ep is None or (ep.tags or {}).get(MANAGED_BY) != "mldeploy":
            raise DeploymentNotFoundError(
                f"no online endpoint {name!r} made by mldeploy in this workspace",
                hint="mldeploy list --target azureml:/SUB/RG/WORKSPACE shows them")
        return ep, ops.deployments(name)

    def _next(self, deps: list[Any]) -> tuple[str, int]:
        used = {d.name.lower() for d in deps}
        seq = max([_seq(d) for d in deps] or [0]) + 1
        wanted = self.config.variant_name
        if wanted:
            if wanted.lower() in used:
                raise UsageError(f"the endpoint has a deployment {wanted.lower()!r} already",
                                 hint="choose another -C variant_name")
            return wanted.lower(), seq
        free = [c for c in COLOURS if c not in used]
        if not free:
            raise UsageError(f"the endpoint has {len(deps)} deployments already",
                             hint="remove one with mldeploy traffic (weight 0) and replace")
        return free[0], seq

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        ops = self.ops()
        with azure_errors(f"replace {name}", name=name):
            ep, deps = self._live(ops, name)
            new, seq = self._next(deps)
            old_traffic = {k.lower(): int(v) for k, v in (ep.traffic or {}).items()}
            old_mirror = {k.lower(): int(v) for k, v in (ep.mirror_traffic or {}).items()}
            image, model = ops.prepare(tx, name, model_uri)
            ops.create_deployment(tx, ep, new, model, image, model_uri, seq=seq)
            tx.record(Resource("traffic", f"{ep.id} (restored to {_fmt(old_traffic)})"),
                      lambda: ops.set_traffic(name, old_traffic, old_mirror))
            cfg = self.config
            if cfg.mirror_percent:
                ops.set_traffic(name, old_traffic, {new: cfg.mirror_percent})
                self.progress(f"mirroring {cfg.mirror_percent}% of traffic to {new}")
                ops.hold(cfg.mirror_seconds, tx)
                ops.check_healthy(name, new)
            for step in tr.steps(cfg.traffic_steps, old_traffic, new):
                ops.set_traffic(name, step, {})  # mirroring ends when live traffic starts
                self.progress(f"traffic {_fmt(step)}")
                if step[new] < 100:
                    ops.hold(cfg.step_wait_seconds, tx)
                ops.check_healthy(name, new)
            registered = ops.models_of(name)  # found through the deployments: before deleting
            for dep in deps:  # the point of no return: the new deployment has all traffic
                ops.delete_deployment(name, dep.name)
            self._remove_models(ops, name, [m for m in registered if m.id != model.id])
            self.progress(f"{name} serves {new}", Status.READY)
            return self._get(name)

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        ops = self.ops()
        with azure_errors(f"add to {name}", name=name):
            ep, deps = self._live(ops, name)
            new, seq = self._next(deps)
            old_traffic = {k.lower(): int(v) for k, v in (ep.traffic or {}).items()}
            old_mirror = {k.lower(): int(v) for k, v in (ep.mirror_traffic or {}).items()}
            image, model = ops.prepare(tx, name, model_uri)
            ops.create_deployment(tx, ep, new, model, image, model_uri, seq=seq)
            share = self.config.add_percent
            if share:
                tx.record(Resource("traffic", f"{ep.id} (restored to {_fmt(old_traffic)})"),
                          lambda: ops.set_traffic(name, old_traffic, old_mirror))
                rest = {k: v for k, v in old_traffic.items() if v} or {
                    d.name.lower(): 1 for d in deps}
                total = sum(rest.values())
                weights = {k: v * (100 - share) / total for k, v in rest.items()}
                weights[new] = float(share)
                ops.set_traffic(name, tr.percentages(weights, [*weights]), old_mirror)
                ops.check_healthy(name, new)
            return self._get(name)

    def _traffic(self, name: str, weights: dict[str, float], *, wait: bool,
                 timeout: float) -> Deployment:
        ops = self.ops()
        with azure_errors(f"traffic {name}", name=name):
            ep, deps = self._live(ops, name)
            pct = tr.percentages(weights, [d.name for d in deps])
            mirror = {k: v for k, v in (ep.mirror_traffic or {}).items()
                      if pct.get(k.lower(), 0) == 0}
            ops.set_traffic(name, pct, mirror)
            self.progress(f"traffic {_fmt(pct)}")
            return self._get(name)

    # -- invoke -------------------------------------------------------------------------------

    def _invoke(self, name: str, body: bytes, ctype: str, variant: str | None) -> Prediction:
        ops = self.ops()
        with azure_errors(f"invoke {name}", name=name):
            ep, deps = self._live(ops, name)
            if variant is not None and variant.lower() not in {d.name.lower() for d in deps}:
                raise UsageError(f"no deployment {variant!r} behind {name!r}",
                                 hint="its deployments: " + ", ".join(d.name for d in deps))
            headers = {"Authorization": f"Bearer {ops.scoring_secret(name)}"}
            if variant is not None:
                headers["azureml-model-deployment"] = variant.lower()
            timeout = self.config.request_timeout_ms / 1000.0 + 30.0
        status, raw, rtype = post_json(self._clients().http, ep.scoring_uri, body, ctype, headers,
                                       timeout)
        if status >= 400:
            from mldeploy.errors import invocation_error

            raise invocation_error(name, status, raw,
                                   hint=f"the container log: az ml online-deployment get-logs "
                                        f"-e {name} -n <deployment>")
        return Prediction.from_response(raw, rtype, variant=variant)

    # -- delete / get / list ------------------------------------------------------------------

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        ops = self.ops()
        with azure_errors(f"delete {name}"):
            ep = ops.endpoint(name)
            if ep is None or (ep.tags or {}).get(MANAGED_BY) != "mldeploy":
                return Deletion(name, self.name, existed=False)
            removed = [Resource("deployment", d.id) for d in ops.deployments(name)]
            registered = ops.models_of(name)  # found through the deployments: before deleting
            ops.delete_endpoint(name)
            removed.insert(0, Resource("endpoint", ep.id))
            gone, leftover = self._remove_models(ops, name, registered)
            return Deletion(name, self.name, existed=True, removed=(*removed, *gone),
                            leftover=leftover)

    def _remove_models(self, ops: _ops.Ops, name: str, models: list[Any]
                       ) -> tuple[tuple[Resource, ...], tuple[Resource, ...]]:
        """Delete the model versions mldeploy registered for ``name`` that no other endpoint's
        deployment runs; returns (removed, left over)."""
        if not models:
            return (), ()
        elsewhere = ops.used_elsewhere(name)
        removed, leftover = [], []
        for m in models:
            if (m.name, str(m.version)) in elsewhere:
                self.progress(f"keeping model {m.name}:{m.version}: another endpoint runs it")
                continue
            try:
                ops.delete_model(m.name, m.version)
                removed.append(Resource("model", m.id))
            except Exception as exc:  # noqa: BLE001 - reported as left over
                self.progress(f"could not remove model {m.name}:{m.version}: {scrub(exc)}")
                leftover.append(Resource("model", m.id))
        return tuple(removed), tuple(leftover)

    def _get(self, name: str) -> Deployment:
        ops = self.ops()
        with azure_errors(f"get {name}", name=name):
            ep, deps = self._live(ops, name)
            return self._describe(ops, ep, deps)

    def _describe(self, ops: _ops.Ops, ep: Any, deps: list[Any]) -> Deployment:
        deps = sorted(deps, key=_seq)
        share = tr.shares(ep.traffic or {}, [d.name for d in deps])
        variants = tuple(Variant(d.name, share[d.name], (d.tags or {}).get(MODEL_URI),
                                 d.instance_count) for d in deps)
        state = _STATE.get(_ops.state_of(ep).lower(), Status.UNKNOWN)
        dep_states = [_STATE.get(_ops.state_of(d).lower(), Status.UNKNOWN) for d in deps]
        if state is Status.READY and any(s is not Status.READY for s in dep_states):
            state = next(s for s in dep_states if s is not Status.READY)
            state = Status.UPDATING if state is Status.CREATING else state
        if state is Status.READY and not deps:
            state = Status.OUT_OF_SERVICE
        serving = max(variants, key=lambda v: (v.weight, -variants.index(v)), default=None)
        models = ops.models_of(ep.name)
        resources = (Resource("endpoint", ep.id), *(Resource("deployment", d.id) for d in deps),
                     *(Resource("model", m.id) for m in models))
        return Deployment(
            ep.name, self.name, state, url=ep.scoring_uri,
            model_uri=serving.model_uri if serving else None, resources=resources,
            variants=variants,
            failure_reason=None if state is not Status.FAILED else "see get_logs",
            details={"traffic": {k.lower(): int(v) for k, v in (ep.traffic or {}).items()},
                     "mirror_traffic": dict(ep.mirror_traffic or {}),
                     "auth_mode": ep.auth_mode,
                     "images": {d.name: getattr(d.environment, "image", None)
                                if not isinstance(d.environment, str) else d.environment
                                for d in deps}})

    def _list(self) -> list[Deployment]:
        ops = self.ops()
        with azure_errors("list endpoints"):
            out = []
            for ep in ops.endpoints():
                if (ep.tags or {}).get(MANAGED_BY) != "mldeploy":
                    continue
                out.append(self._describe(ops, ep, ops.deployments(ep.name)))
            return sorted(out, key=lambda d: d.name)

    # -- plan ---------------------------------------------------------------------------------

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        """The dry run; a create plan renders offline (no Azure call, no workspace needed)."""
        cfg = self.config
        if mode is DeployMode.CREATE:
            deps: list[Any] = []
            colour, seq, ep_id = COLOURS[0], 1, f"onlineEndpoints/{name}"
        else:
            ops = self.ops()
            with azure_errors(f"plan {name}", name=name):
                ep, deps = self._live(ops, name)
            colour, seq = self._next(deps)
            ep_id = ep.id
        image = _ops.planned_image(cfg, name, model_uri)
        model_name, version = _ops.model_name(name, model_uri)
        model = sp.model(cfg, model_name, version or "auto", model_uri, model_uri, name)
        dep = sp.deployment(cfg, name, colour, model, image, model_uri, seq)
        changes = []
        manifests = []
        if mode is DeployMode.CREATE:
            changes.append(Change(Action.CREATE, Resource("endpoint", ep_id),
                                  f"auth {cfg.auth_mode.value}"))
            manifests.append(sp.as_yaml_dict(sp.endpoint(cfg, name), "managedOnlineEndpoint"))
        changes.append(Change(Action.CREATE, Resource(
            "model", f"{model_name}:{version or 'next'}"), "mlflow_model asset"))
        detail = (f"custom container {image}" if cfg.environment is EnvironmentKind.CUSTOM
                  else f"no-code MLflow: {sp.NO_CODE_NOTE}")
        changes.append(Change(Action.CREATE, Resource(
            "deployment", f"{ep_id}/deployments/{colour}"), detail))
        if mode is DeployMode.REPLACE:
            if cfg.mirror_percent:
                changes.append(Change(Action.UPDATE, Resource("traffic", ep_id),
                                      f"mirror {cfg.mirror_percent}% to {colour}"))
            changes.append(Change(Action.UPDATE, Resource("traffic", ep_id),
                                  f"{colour} at "
                                  + " -> ".join(f"{s}%" for s in cfg.traffic_steps)))
            changes += [Change(Action.DELETE, Resource("deployment", d.id)) for d in deps]
        elif mode is DeployMode.ADD:
            changes.append(Change(Action.UPDATE, Resource("traffic", ep_id),
                                  f"{colour} at {cfg.add_percent}%"))
        else:
            changes.append(Change(Action.UPDATE, Resource("traffic", ep_id), f"{colour} at 100%"))
        manifests.append(sp.as_yaml_dict(dep, "managedOnlineDeployment"))
        return Plan(self.name, name, mode, tuple(changes), tuple(manifests))


def _seq(dep: Any) -> int:
    try:
        return int((dep.tags or {}).get(sp.SEQ, "0"))
    except ValueError:
        return 0


def _fmt(traffic: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}%" for k, v in traffic.items()) or "none"


__all__ = ["AzureMLTarget", "NAME_RULE"]
