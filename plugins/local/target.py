"""The local target: the hooks the core calls (Docker calls in ``_client``, the deploy steps in
``_steps``, state files in ``_state``, the gateway process in ``gateway``).

An endpoint is one container per variant behind its gateway on 127.0.0.1. ``replace`` is
blue/green: start the new container, wait for its ``/ping``, switch the gateway's routes, drain
and stop the old one; if the new one never gets healthy the old one keeps serving and the new one
is removed, with its log tail in the error. Every verb that changes an endpoint holds its lock.
The verbs always wait (the target does not declare ``no-wait``, so the core turns
``wait=False`` into a wait and says so): blue/green needs the new container's ``/ping`` before
the switch; ``timeout`` bounds that wait per container. Create / replace / add run in the
core's transaction: a failed or interrupted run removes exactly what it made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
from collections.abc import Iterator, Mapping
from typing import Any

from mldeploy.errors import (
    DeploymentExistsError,
    DeploymentNotFoundError,
    MldeployError,
    TargetError,
    UsageError,
)
from mldeploy.plugins.local import _gateway_ctl as gw
from mldeploy.plugins.local import _steps as ro
from mldeploy.plugins.local._client import ContainerInfo, Engine, engine_from
from mldeploy.plugins.local._resources import endpoint_filter, home_id, image_tag
from mldeploy.plugins.local._state import EndpointState, StateStore
from mldeploy.plugins.local.config import DEFAULT_VARIANT, NAME_RE, LocalConfig
from mldeploy.plugins.local.errors import invocation_error
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


class LocalTarget(Target):
    name = "local"
    config_class = LocalConfig
    config: LocalConfig
    # no NO_WAIT: blue/green needs the new container's /ping before the switch
    capabilities = frozenset({Capability.ADD, Capability.TRAFFIC, Capability.VARIANT_INVOKE})
    name_rule = NameRule(
        pattern=NAME_RE.pattern.removeprefix("^").removesuffix("$"), max_length=63,
        hint="letters, digits and hyphens, starting with a letter or digit, at most 63 "
             "characters", what="local endpoint name")
    timeout_setting = "startup_timeout"  # bounds the wait for each new container's /ping

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.store = StateStore(self.config.resolved_state_dir().absolute())
        self.home = home_id(self.store.dir)
        self._engine: Engine | None = None
        self._held: set[str] = set()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = engine_from(self.clients)
        return self._engine

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with self.store.lock(name):
            self._held.add(name)
            try:
                yield
            finally:
                self._held.discard(name)

    def _load(self, name: str) -> EndpointState:
        state = self.store.load(name)
        if state is None:
            raise DeploymentNotFoundError(f"no local endpoint named {name!r}",
                                          hint="mldeploy list --target local shows them")
        return state

    def _say(self, message: str) -> None:
        self.progress(message)

    # -- create / replace / add ---------------------------------------------------------------

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        with self._locked(name):
            if self.store.load(name) is not None:
                raise DeploymentExistsError(f"local endpoint {name!r} already exists",
                                            hint="use --mode replace to change its model")
            for orphan in self.engine.find(endpoint_filter(self.home, name)):
                self._say(f"removing {orphan.name}, left over by an earlier run")
                self.engine.remove(orphan.name, stop_timeout=0)
            self.progress(f"creating {name}", Status.CREATING)
            c = self.config
            state = EndpointState(name=name, host=c.host, port=c.port, generation=1,
                                  upstream_timeout=c.upstream_timeout)
            self._deploy(tx, state, None, c.variant_name or DEFAULT_VARIANT, model_uri,
                         1.0, ())
        return self.get(name)

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        with self._locked(name):
            old = self._load(name)
            wanted = self.config.variant_name
            if wanted is not None and old.variant(wanted) is None:
                raise UsageError(f"{name!r} has no variant {wanted!r}",
                                 hint=f"variants: {', '.join(v.name for v in old.variants)}; "
                                      "--mode add creates a new one")
            primary = old.primary()
            vname = wanted or (primary.name if primary else DEFAULT_VARIANT)
            replaced = [v for v in old.variants if wanted is None or v.name == wanted]
            weight = replaced[0].weight if wanted else 1.0
            self.progress(f"replacing {', '.join(v.name for v in replaced) or 'nothing'} "
                          f"of {name}", Status.UPDATING)
            kept = tuple(v for v in old.variants if v not in replaced)
            self._deploy(tx, old, old, vname, model_uri, weight, kept,
                         retire=[v.container for v in replaced])
        return self.get(name)

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        with self._locked(name):
            old = self._load(name)
            taken = {v.name for v in old.variants}
            vname = self.config.variant_name or next(
                f"variant-{i}" for i in range(len(taken) + 1, len(taken) + 100)
                if f"variant-{i}" not in taken)
            if vname in taken:
                raise UsageError(f"{name!r} already has a variant {vname!r}",
                                 hint=f"use --mode replace -C variant_name={vname} to change "
                                      "its model, or pick another -C variant_name")
            self.progress(f"adding variant {vname} to {name} with weight "
                          f"{self.config.weight:g}", Status.UPDATING)
            self._deploy(tx, old, old, vname, model_uri, self.config.weight, old.variants)
        return self.get(name)

    def _deploy(self, tx: Transaction, base: EndpointState, old: EndpointState | None,
                vname: str, model_uri: str, weight: float, kept: tuple[Any, ...],
                retire: list[str] | None = None) -> None:
        """Start ``vname`` serving ``model_uri``, then route to it together with ``kept``; each
        container, state file and gateway is recorded in ``tx`` as it is made."""
        c = self.config
        *image, built_with = ro.ensure_image(self.engine, c, model_uri, self._say, base.build,
                                             home=self.home)
        lim = ro.limits(c, base.limits)
        new_variant = ro.start_variant(
            self.engine, c, home=self.home, endpoint=base.name, variant=vname,
            model_uri=model_uri, weight=weight, image=tuple(image), lim=lim, tx=tx,
            timeout=tx.timeout, say=self._say, log_dir=self.store.log_dir(base.name))
        order = [v.name for v in (old.variants if old else ())]
        variants = sorted((*kept, new_variant),
                          key=lambda v: order.index(v.name) if v.name in order else 1 << 30)
        build = built_with.effective() if built_with is not None else base.build
        new = dataclasses.replace(base, generation=base.generation + (old is not None),
                                  variants=tuple(variants), limits=lim, build=build)
        new = ro.switch(self.store, old, new, tx, self._say)
        failed = ro.retire(self.engine, new, list(retire or []), drain=c.drain_timeout,
                           stop_timeout=c.stop_timeout, say=self._say)
        if failed:
            self._say(f"left running: {', '.join(failed)} (mldeploy delete removes them)")
        self.progress(f"{base.name} is ready at {new.url}", Status.READY)

    def cleanup(self, *, dry_run: bool = False) -> Any:
        """Remove this state directory's unused model images and orphaned containers (never
        another user's, never one in use); see ``_cleanup.py``. Returns a ``Cleanup``."""
        from mldeploy.plugins.local._cleanup import cleanup

        return cleanup(self, dry_run=dry_run)

    # -- traffic / delete -------------------------------------------------------------------------

    def _traffic(self, name: str, weights: Mapping[str, float], *, wait: bool,
                 timeout: float) -> Deployment:
        with self._locked(name):
            state = self._load(name)
            unknown = sorted(set(weights) - {v.name for v in state.variants})
            if unknown:
                raise UsageError(f"{name!r} has no variant {unknown[0]!r}",
                                 hint=f"variants: {', '.join(v.name for v in state.variants)}")
            variants = tuple(dataclasses.replace(v, weight=float(weights.get(v.name, v.weight)))
                             for v in state.variants)
            if not any(v.weight > 0 for v in variants):
                raise UsageError("every variant would have weight 0",
                                 hint="give at least one variant a weight above 0")
            new = dataclasses.replace(state, variants=variants, generation=state.generation + 1)
            self.store.save(new)
            if gw.status(state) is not None:
                try:
                    gw.reload(new)
                except TargetError:
                    self.store.save(dataclasses.replace(state, generation=new.generation + 1))
                    raise
            else:
                self._say(f"{name} is stopped: the weights apply when it runs again")
        return self.get(name)

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        with self._locked(name):
            removed: list[Resource] = []
            leftover: list[Resource] = []
            try:
                state = self.store.load(name)
            except TargetError:  # an unreadable state file: still remove what is labelled
                state = None
            if state is not None and gw.stop(state):
                removed.append(Resource("gateway", state.url or f"pid {state.gateway_pid}"))
            names = {c.name for c in self.engine.find(endpoint_filter(self.home, name))}
            names |= {v.container for v in (state.variants if state else ())}
            for cname in sorted(names):
                try:
                    if self.engine.remove(cname, stop_timeout=self.config.stop_timeout):
                        removed.append(Resource("container", cname))
                        self._say(f"removed container {cname}")
                except MldeployError:
                    leftover.append(Resource("container", cname))
            existed = self.store.remove(name) or bool(removed)
        return Deletion(name, self.name, existed=existed, removed=tuple(removed),
                        leftover=tuple(leftover))

    # -- get / list / invoke -----------------------------------------------------------------------

    def _get(self, name: str) -> Deployment:
        state = self._load(name)
        return self._describe(state, self._containers(name))

    def _list(self) -> list[Deployment]:
        infos = self._containers(None)
        out = []
        for name in self.store.names():
            try:
                state = self.store.load(name)
            except TargetError as exc:
                out.append(Deployment(name, self.name, Status.UNKNOWN, failure_reason=exc.message))
                continue
            if state is not None:
                out.append(self._describe(state, infos))
        return out

    def _containers(self, name: str | None) -> dict[str, ContainerInfo] | None:
        try:
            return {c.name: c for c in self.engine.find(endpoint_filter(self.home, name))}
        except TargetError:
            return None  # no engine: the endpoint is reported, its containers as unknown

    def _describe(self, state: EndpointState,
                  infos: dict[str, ContainerInfo] | None) -> Deployment:
        live = gw.status(state)
        problems = []
        containers: dict[str, Any] = {}
        for v in state.variants:
            info = infos.get(v.container) if infos is not None else None
            text = ("unknown (no Docker engine answers)" if infos is None
                    else info.describe() if info else "missing")
            containers[v.container] = {"variant": v.name, "image": v.image, "port": v.port,
                                       "state": text}
            if infos is not None and (info is None or not info.running):
                problems.append(f"container {v.container} is {text}")
        if state.name not in self._held and self.store.busy(state.name):
            status, reason = Status.UPDATING, None
        elif live is None:
            status = Status.OUT_OF_SERVICE
            reason = "stopped: the gateway is not running (machine restart or killed); " \
                     "mldeploy deploy --mode replace starts it again"
        elif problems or infos is None:
            status = Status.FAILED if problems else Status.UNKNOWN
            reason = "; ".join(problems) or "no Docker engine answers"
        else:
            status, reason = Status.READY, None
        primary = state.primary()
        resources = ((Resource("gateway", state.url),) if state.url else ()) + tuple(
            Resource("container", v.container) for v in state.variants)
        details = {"state": "running" if live else "stopped", "gateway_pid": state.gateway_pid,
                   "state_file": str(self.store.path(state.name)), "containers": containers,
                   "limits": {k: v for k, v in state.limits.items() if v is not None},
                   "build": dict(state.build),
                   "invocations_url": f"{state.url}/invocations" if state.url else None,
                   "requests": (live or {}).get("requests")}
        return Deployment(
            state.name, self.name, status, url=state.url,
            model_uri=primary.model_uri if primary else None, resources=resources,
            variants=tuple(Variant(v.name, v.weight, v.model_uri, 1) for v in state.variants),
            failure_reason=reason, details=details)

    def _invoke(self, name: str, body: bytes, ctype: str, variant: str | None) -> Prediction:
        state = self._load(name)
        headers = {"Content-Type": ctype, "Content-Length": str(len(body))}
        if variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = variant
        conn = http.client.HTTPConnection(state.client_host, state.port,
                                          timeout=state.upstream_timeout + 5)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TargetError(f"local endpoint {name!r} does not answer on {state.url} "
                              f"({type(exc).__name__})",
                              hint="mldeploy get --target local shows its state") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise invocation_error(name, resp.status, raw)
        return Prediction.from_response(raw, resp.getheader("Content-Type"),
                                        variant=resp.getheader("x-Amzn-Invoked-Production-Variant"))

    # -- plan -------------------------------------------------------------------------------------

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        state = self.store.load(name)
        if mode is DeployMode.CREATE and state is not None:
            raise DeploymentExistsError(f"local endpoint {name!r} already exists",
                                        hint="use --mode replace to change its model")
        if mode is not DeployMode.CREATE and state is None:
            raise DeploymentNotFoundError(f"no local endpoint named {name!r}",
                                          hint="mldeploy list --target local shows them")
        c = self.config
        if c.image:
            changes = [Change(Action.KEEP, Resource("image", c.image), "given with -C image")]
        else:
            from mldeploy import images
            from mldeploy.model_uri import materialize

            given = c.build_options().given()
            options = ro.build_options(c, state.build if state else None)
            with materialize(model_uri) as model_dir:
                tag = images.request(model_dir, model_uri, options, image_tag).reference
            exists = not c.rebuild and self.engine.image_id(tag) is not None
            kept = sorted(set(options.given()) - set(given)) if state else []
            how = f"build: {options.describe()}" + (
                f"; kept from the endpoint: {', '.join(kept)}" if kept else "")
            changes = [Change(Action.KEEP if exists else Action.CREATE, Resource("image", tag),
                              f"built already ({how})" if exists else how)]
        vname = c.variant_name or (DEFAULT_VARIANT if state is None else
                                   (state.primary().name if mode is DeployMode.REPLACE and
                                    state.primary() else "variant-N"))
        lim = {k: v for k, v in ro.limits(c, state.limits if state else None).items()
               if v is not None}
        fresh = {k for k, v in ro.limits(c, None).items() if v is not None}
        detail = f"variant {vname}" + (
            f"; {', '.join(f'{k}={v}' for k, v in lim.items())}" if lim else "")
        if state is not None and set(lim) - fresh:
            detail += f" (kept from the endpoint: {', '.join(sorted(set(lim) - fresh))})"
        changes.append(Change(Action.CREATE, Resource("container", f"mldeploy-local-{name}-"
                                                      f"{vname}-*"), detail))
        if state is None:
            where = f"{c.host}:{c.port}" if c.port else f"{c.host}, a free port"
            changes.append(Change(Action.CREATE, Resource("gateway", where)))
        else:
            changes.append(Change(Action.UPDATE, Resource("gateway", state.url or "stopped"),
                                  "switch routes"))
        if mode is DeployMode.REPLACE and state is not None:
            for v in state.variants:
                if c.variant_name in (None, v.name):
                    changes.append(Change(Action.DELETE, Resource("container", v.container),
                                          "after the drain"))
        return Plan(self.name, name, mode, tuple(changes))


__all__ = ["LocalTarget"]
