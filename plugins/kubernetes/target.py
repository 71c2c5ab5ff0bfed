"""The Kubernetes target: the hooks the core calls (objects are built in ``manifests``, checked
in ``_checks``, sent by ``_client``; rollouts are judged in ``_rollout``; replace and canaries
are functions in ``_replace`` and ``_traffic``; errors translated in ``errors``).

- ``create`` makes the Deployment, PDB, HPA and Service (each recorded in the core's
  transaction: all removed again if the rollout fails, times out or is interrupted);
- ``replace`` converges every object to the config (``_replace``: the PDB/HPA/Service updated,
  created or deleted, the Deployment patched and its rollout watched) and on failure restores
  them all;
- ``add`` runs a canary Deployment under the same Service; ``traffic`` rescales, promotes or
  drops it;
- ``delete`` removes exactly the objects labelled as mldeploy's for that name.
"""

from __future__ import annotations

import time
from typing import Any

from mldeploy.errors import (
    DeploymentExistsError,
    DeploymentNotFoundError,
    UsageError,
)
from mldeploy.plugins.kubernetes import _checks, _images, _ops, _rollout
from mldeploy.plugins.kubernetes import _replace as rp
from mldeploy.plugins.kubernetes import _traffic as tr
from mldeploy.plugins.kubernetes import manifests as mf
from mldeploy.plugins.kubernetes._client import Clients, Kube, connect
from mldeploy.plugins.kubernetes._ops import rid
from mldeploy.plugins.kubernetes.config import DNS_1035, KubernetesConfig, Output
from mldeploy.plugins.kubernetes.errors import Unreachable, kube_errors, scrub
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

KINDS = ("Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service")
MAX_NAME = 56  # NAME-canary must stay a valid label value


# The core Plan carries the manifests and prints them (``to_yaml()``, ``deploy -o yaml``).
KubernetesPlan = Plan


NAME_RULE = NameRule(
    pattern=DNS_1035.pattern.removeprefix("^").removesuffix("$"), max_length=MAX_NAME,
    hint=f"a letter, then lowercase letters, digits and '-', at most {MAX_NAME} (it names the "
         "Service, a DNS label)",
    what="deployment name on Kubernetes")


def check_name(name: str) -> str:
    return NAME_RULE.check("kubernetes", name)


class KubernetesTarget(Target):
    name = "kubernetes"
    config_class = KubernetesConfig
    config: KubernetesConfig
    capabilities = frozenset({Capability.ADD, Capability.TRAFFIC, Capability.NO_WAIT,
                              Capability.VARIANT_INVOKE})
    name_rule = NAME_RULE

    # -- connection ---------------------------------------------------------------------------

    def _location(self) -> tuple[str | None, str | None]:
        parts = (self.location or "").strip("/").split("/") if self.location else []
        return (parts[0] or None if parts else None), (parts[1] or None if len(parts) > 1
                                                       else None)

    def _clients(self) -> Clients:
        if not isinstance(self.clients, Clients):
            context, _ = self._location()
            if self.clients is not None:  # a kubernetes.client.ApiClient handed in
                self.clients = Clients(self.clients)
            else:
                self.clients = connect(context or self.config.context, self.config.kubeconfig)
        return self.clients

    def kube(self) -> Kube:
        c = self._clients()
        _, namespace = self._location()
        return Kube(c.api, namespace or self.config.namespace or c.namespace or "default")

    def _say(self, message: str, status: Status | None = None) -> None:
        self.progress(message, status)

    def _guard(self, action: str, name: str | None = None) -> Any:
        return kube_errors(action, name=name)

    # -- create -------------------------------------------------------------------------------

    def _model(self, name: str, model_uri: str, *, build: bool) -> mf.Model:
        if build and self.config.output is Output.KSERVE:
            raise UsageError("output=kserve only prints an InferenceService (with --dry-run)",
                             hint="apply it with kubectl apply -f -, or drop -C output=kserve")
        builder = (self._clients().build_image or _images.docker_builder) if build else None
        return _images.resolve(self.config, name, model_uri, build=builder, log=self._say)

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        kube = self.kube()
        with self._guard(f"create {name}"):
            self._refuse_existing(kube, name)
            model = self._model(name, model_uri, build=True)
            objs = mf.create_set(self.config, name, kube.namespace, model)
            _checks.check(objs)
            for obj in objs:
                _ops.create(tx, kube, mf.with_initial_replicas(self.config, obj))
                self._say(f"created {rid(obj['kind'], kube.namespace, name)}", Status.CREATING)
            if tx.wait:
                _ops.watch_or_fail(kube, name, self.config, timeout=tx.timeout, say=self._say)
            self._say(f"{name} is ready" if tx.wait else f"{name} is rolling out",
                      Status.READY if tx.wait else Status.CREATING)
            return self._get(name)

    def _refuse_existing(self, kube: Kube, name: str) -> None:
        for kind in KINDS:
            obj = kube.get(kind, name)
            if obj is not None:
                ours = (obj["metadata"].get("labels") or {}).get(mf.MANAGED_BY) == "mldeploy"
                raise DeploymentExistsError(
                    f"{rid(kind, kube.namespace, name)} already exists"
                    + ("" if ours else " and was not made by mldeploy"),
                    hint="use --mode replace to change its model" if ours else
                    "choose another name or namespace")

    # -- replace --------------------------------------------------------------------------------

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        kube = self.kube()
        with self._guard(f"replace {name}", name):
            stable = self._ours(kube, name)
            model = self._model(name, model_uri, build=True)
            steps = rp.replace_steps(kube, self.config, name, stable, model)
            rp.converge(kube, self.config, name, steps, tx=tx, say=self._say)
            return self._get(name)

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        kube = self.kube()
        with self._guard(f"add to {name}", name):
            stable = self._ours(kube, name)
            tr.refuse_second_canary(kube, name)
            model = self._model(name, model_uri, build=True)
            tr.add_canary(kube, self.config, name, stable, model, tx=tx, say=self._say)
            return self._get(name)

    def _traffic(self, name: str, weights: dict[str, float], *, wait: bool,
                 timeout: float) -> Deployment:
        kube = self.kube()
        with self._guard(f"traffic {name}", name):
            stable = self._ours(kube, name)
            canary = kube.get("Deployment", mf.deployment_name(name, mf.CANARY))
            share = {v.name: v.weight for v in self._describe(kube, name, stable, canary).variants}
            tr.set_traffic(kube, self.config, name, weights, stable=stable, canary=canary,
                           share=share, wait=wait, timeout=timeout, say=self._say)
            return self._get(name)

    def _invoke(self, name: str, body: bytes, ctype: str, variant: str | None) -> Prediction:
        kube = self.kube()
        with self._guard(f"invoke {name}", name):
            svc = kube.get("Service", name)
            if svc is None or (svc["metadata"].get("labels") or {}).get(
                    mf.MANAGED_BY) != "mldeploy":
                self._ours(kube, name)  # raises DeploymentNotFoundError
            status, raw, rtype = tr.send(kube, name, body, ctype, variant)
        if status >= 400:
            raise tr._invocation_error(name, status, raw)
        return Prediction.from_response(raw, rtype, variant=variant)

    def _ours(self, kube: Kube, name: str, variant: str = mf.STABLE) -> dict[str, Any]:
        dep = kube.get("Deployment", mf.deployment_name(name, variant))
        if dep is None or (dep["metadata"].get("labels") or {}).get(mf.MANAGED_BY) != "mldeploy":
            raise DeploymentNotFoundError(
                f"no deployment {name!r} made by mldeploy in namespace {kube.namespace!r}",
                hint="mldeploy list --target kubernetes shows them")
        return dep

    # -- delete / get / list ------------------------------------------------------------------

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        kube = self.kube()
        with self._guard(f"delete {name}"):
            found = [(kind, o["metadata"]["name"]) for kind in reversed(KINDS)
                     for o in kube.list(kind, mf.selector(name))]
            removed = []
            for kind, obj_name in found:  # the Service first: traffic stops before pods go
                if kube.delete(kind, obj_name):  # False: gone meanwhile (404), nothing to do
                    removed.append(Resource(kind.lower(), rid(kind, kube.namespace, obj_name)))
            if wait:
                until = time.monotonic() + timeout
                while kube.list("Deployment", mf.selector(name)) and time.monotonic() < until:
                    time.sleep(self.config.poll_interval_seconds)
            return Deletion(name, self.name, existed=bool(found), removed=tuple(removed))

    def _get(self, name: str) -> Deployment:
        kube = self.kube()
        with self._guard(f"get {name}", name):
            stable = self._ours(kube, name)
            canary = kube.get("Deployment", mf.deployment_name(name, mf.CANARY))
            return self._describe(kube, name, stable, canary)

    def _describe(self, kube: Kube, name: str, stable: dict[str, Any],
                  canary: dict[str, Any] | None) -> Deployment:
        st = _rollout.state(stable)
        rev = int((stable["metadata"].get("annotations") or {}).get(_rollout.REVISION, "1"))
        status = {_rollout.Phase.DONE: Status.READY, _rollout.Phase.FAILED: Status.FAILED}.get(
            st.phase, Status.UPDATING if rev > 1 or st.available else Status.CREATING)
        if stable["metadata"].get("deletionTimestamp"):
            status = Status.DELETING
        deps = [d for d in (stable, canary) if d is not None]
        counts = [int(d["spec"].get("replicas", 1)) for d in deps]
        variants = tuple(
            Variant(d["metadata"]["labels"].get(mf.VARIANT, mf.STABLE), n / max(sum(counts), 1),
                    (d["metadata"].get("annotations") or {}).get(mf.MODEL_URI), n)
            for d, n in zip(deps, counts, strict=True))
        resources = [Resource(k.lower(), rid(k, kube.namespace, o["metadata"]["name"]))
                     for k in KINDS for o in kube.list(k, mf.selector(name))]
        svc = kube.get("Service", name)
        url = f"http://{name}.{kube.namespace}.svc.cluster.local:{self.config.port}/invocations"
        ingress = ((svc or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        if ingress:
            host = ingress[0].get("hostname") or ingress[0].get("ip")
            url = f"http://{host}:{svc['spec']['ports'][0]['port']}/invocations"  # type: ignore
        template = stable["spec"]["template"]
        extra = {"canary": tr.canary_report(name, stable, canary)} if canary is not None else {}
        return Deployment(
            name, self.name, status, url=url, model_uri=variants[0].model_uri,
            resources=tuple(resources), variants=variants,
            failure_reason=st.message if status is Status.FAILED else None,
            details={"namespace": kube.namespace, "revision": rev, "rollout": st.message,
                     "image": template["spec"]["containers"][0]["image"],
                     "model_version": template["metadata"]["labels"].get(mf.VERSION),
                     "proxy": f"{kube.path('Service', name + ':http', 'proxy/invocations')}",
                     **extra})

    def _list(self) -> list[Deployment]:
        kube = self.kube()
        with self._guard("list deployments"):
            stables = kube.list("Deployment", {mf.MANAGED_BY: "mldeploy", mf.VARIANT: mf.STABLE})
            out = []
            for dep in sorted(stables, key=lambda d: d["metadata"]["name"]):
                name = dep["metadata"]["labels"].get(mf.INSTANCE, dep["metadata"]["name"])
                canary = kube.get("Deployment", mf.deployment_name(name, mf.CANARY))
                out.append(self._describe(kube, name, dep, canary))
            return out

    # -- plan ---------------------------------------------------------------------------------

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> KubernetesPlan:
        """The dry run. Without a cluster (no kubeconfig, or the API server not reachable) it
        still renders the manifests - GitOps use: the namespace is the location's, the config's
        or ``default``; nothing is compared with live objects and the changes say so."""
        try:
            kube: Kube | None = self.kube()
        except UsageError as exc:
            self._say(f"no cluster ({exc.message}): rendering the manifests without comparing")
            kube = None
        model = self._model(name, model_uri, build=False)
        if kube is not None:
            with self._guard(f"plan {name}"):
                try:
                    return self._plan_live(kube, mode, name, model)
                except Unreachable as exc:
                    self._say(f"cluster not reachable ({scrub(str(exc), 200)}): rendering the "
                              "manifests without comparing")
        ns = self._location()[1] or self.config.namespace or (
            self.clients.namespace if isinstance(self.clients, Clients) else None) or "default"
        return self._plan_offline(mode, name, ns, model)

    def _objects(self, mode: DeployMode, name: str, ns: str, model: mf.Model,
                 stable: dict[str, Any] | None) -> list[dict[str, Any]]:
        if mode is DeployMode.ADD:
            return [tr.canary_manifest(self.config, name, ns, model, stable or {
                "spec": {"replicas": self.config.min_replicas}})]
        objs = ([mf.inference_service(self.config, name, ns, model)]
                if self.config.output is Output.KSERVE
                else mf.create_set(self.config, name, ns, model))
        _checks.check(objs)
        return objs

    def _plan_offline(self, mode: DeployMode, name: str, ns: str,
                      model: mf.Model) -> KubernetesPlan:
        objs = self._objects(mode, name, ns, model, None)
        action = Action.CREATE if mode is not DeployMode.REPLACE else Action.UPDATE
        detail = "" if mode is DeployMode.CREATE else "not compared with the cluster"
        if mode is DeployMode.ADD:
            detail = f"canary: {model.version}; sized for {self.config.min_replicas} stable " \
                     "pods (not compared with the cluster)"
        changes = [Change(action, Resource(o["kind"].lower(), rid(o["kind"], ns,
                                                                  o["metadata"]["name"])),
                          detail or self._initial(o)) for o in objs]
        return KubernetesPlan(self.name, name, mode, tuple(changes), tuple(objs))

    def _initial(self, obj: dict[str, Any]) -> str:
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            return (f"starts at {self.config.min_replicas} pods; the HPA owns the count "
                    "(no replicas in the manifest)")
        return ""

    def _plan_live(self, kube: Kube, mode: DeployMode, name: str,
                   model: mf.Model) -> KubernetesPlan:
        ns = kube.namespace
        if mode is DeployMode.CREATE:
            self._refuse_existing(kube, name)
            objs = self._objects(mode, name, ns, model, None)
            changes = [Change(Action.CREATE, Resource(o["kind"].lower(), rid(
                o["kind"], ns, o["metadata"]["name"])), self._initial(o)) for o in objs]
            return KubernetesPlan(self.name, name, mode, tuple(changes), tuple(objs))
        stable = self._ours(kube, name)
        if mode is DeployMode.REPLACE:
            steps = rp.replace_steps(kube, self.config, name, stable, model)
            desired = mf.create_set(self.config, name, ns, model)
            return KubernetesPlan(self.name, name, mode, tuple(s.change(ns) for s in steps),
                                  tuple(desired))
        (canary,) = self._objects(mode, name, ns, model, stable)
        change = Change(Action.CREATE, Resource("deployment", rid(
            "Deployment", ns, canary["metadata"]["name"])), f"canary: {model.version}")
        return KubernetesPlan(self.name, name, mode, (change,), (canary,))


__all__ = ["KubernetesPlan", "KubernetesTarget", "check_name"]
