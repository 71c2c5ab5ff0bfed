"""The steps of a run on the SDK client: each thing made is recorded in the core's transaction
with its undo as it is made; long operations are polled within the run's timeout."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Callable
from typing import Any

from mldeploy.errors import UsageError
from mldeploy.plugins.azureml import _image
from mldeploy.plugins.azureml import _specs as sp
from mldeploy.plugins.azureml._client import ENDPOINT_TAG, MANAGED_BY, Clients
from mldeploy.plugins.azureml.config import AzureMLConfig, EnvironmentKind
from mldeploy.plugins.azureml.errors import scrub
from mldeploy.target import Resource, Status
from mldeploy.transaction import StepFailed, StepTimedOut, Transaction

_REGISTRY = re.compile(r"^models:/(?P<name>[^/@]+)(?:@[^/]+|/(?P<ref>[^/]+))?(?:/.*)?$")


def model_name(endpoint: str, model_uri: str) -> tuple[str, str | None]:
    """The model asset's name and version: a registry URI's name with its version
    (``models:/NAME/3``), its name alone for an alias or a stage (``models:/NAME@champion``,
    ``models:/NAME/latest``: the next free version), else the endpoint's name and the next free
    version."""
    m = _REGISTRY.match(model_uri.strip())
    if m:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", m["name"])[:255].strip("-._") or endpoint
        ref = m["ref"]
        return name, ref if ref is not None and ref.isdigit() else None
    return endpoint, None


def planned_image(cfg: AzureMLConfig, name: str, model_uri: str) -> str | None:
    if cfg.environment is EnvironmentKind.AZUREML_MLFLOW:
        return None
    if cfg.image:
        return cfg.image
    from mldeploy.model_uri import materialize

    with materialize(model_uri) as model_dir:
        return _image.request(cfg, name, model_uri, model_dir,
                              cfg.registry or "WORKSPACE_ACR.azurecr.io").reference


def state_of(resource: Any) -> str:
    """A provisioning state as Azure's word (the SDK gives a str enum or a str)."""
    state = getattr(resource, "provisioning_state", None) or ""
    return str(getattr(state, "value", state))


def quiet() -> contextlib.AbstractContextManager[io.StringIO]:
    """The SDK's pollers print a dot per poll to stdout (``AzureMLPolling``), which would corrupt
    ``-o json``; long operations run with stdout captured."""
    return contextlib.redirect_stdout(io.StringIO())


class Ops:
    def __init__(self, clients: Clients, cfg: AzureMLConfig,
                 say: Callable[..., None]) -> None:
        self.c = clients
        self.ml = clients.ml_client
        self.cfg = cfg
        self.say = say

    # -- reads ----------------------------------------------------------------------------------

    def endpoint(self, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.ml.online_endpoints.get(name)
        except ResourceNotFoundError:
            return None

    def endpoints(self) -> list[Any]:
        return list(self.ml.online_endpoints.list())

    def deployments(self, name: str) -> list[Any]:
        return list(self.ml.online_deployments.list(name))

    def models_of(self, name: str) -> list[Any]:
        """The model versions mldeploy registered for endpoint ``name``, and the versions of
        mldeploy's its deployments run (a ``models:/NAME/N`` another endpoint registered)."""
        from azure.core.exceptions import ResourceNotFoundError

        names, running = self._models_run(name)
        out = []
        for container in names:
            try:
                versions = list(self.ml.models.list(name=container))
            except ResourceNotFoundError:
                continue
            out += [m for m in versions if (m.tags or {}).get(MANAGED_BY) == "mldeploy" and (
                (m.tags or {}).get(ENDPOINT_TAG) == name or (m.name, str(m.version)) in running)]
        return sorted(out, key=lambda m: (m.name, str(m.version)))

    def _models_run(self, name: str) -> tuple[set[str], set[tuple[str, str]]]:
        """The model names to look in (the endpoint's own and its deployments') and the
        ``(name, version)`` its deployments run."""
        from azure.core.exceptions import ResourceNotFoundError

        names, running = {name}, set()
        try:
            for d in self.deployments(name):
                model = d.model if isinstance(d.model, str) else getattr(d.model, "id", "") or ""
                found = re.search(r"/models/([^/]+)/versions/([^/]+)", model or "")
                if found:
                    names.add(found[1])
                    running.add((found[1], found[2]))
        except ResourceNotFoundError:
            pass
        return names, running

    def used_elsewhere(self, name: str) -> set[tuple[str, str]]:
        """``(model name, version)`` of the models the deployments of endpoints other than
        ``name`` run: a version mldeploy registered for ``name`` and reused by another endpoint
        (``models:/NAME/N`` deployed twice) stays while that endpoint uses it."""
        used: set[tuple[str, str]] = set()
        for ep in self.endpoints():
            if ep.name.lower() == name.lower():
                continue
            used |= self._models_run(ep.name)[1]
        return used

    def scoring_secret(self, name: str) -> str:
        keys = self.ml.online_endpoints.get_keys(name)
        secret = getattr(keys, "primary_key", None) or getattr(keys, "access_token", None)
        if not secret:
            raise UsageError(f"Azure ML gave no key or token for {name!r}")
        return secret

    def logs(self, endpoint: str, deployment: str) -> str:
        if not self.cfg.log_lines:
            return ""
        try:
            text = self.ml.online_deployments.get_logs(deployment, endpoint, self.cfg.log_lines)
        except Exception:  # noqa: BLE001 - a courtesy for the error message
            return ""
        lines = [ln for ln in str(text or "").splitlines() if ln.strip()
                 and not ln.startswith(("Traceback (most recent call last)", " ", "\t"))]
        return scrub("\n".join(lines[-self.cfg.log_lines:]), 4000)

    # -- steps ----------------------------------------------------------------------------------

    def prepare(self, tx: Transaction, name: str, model_uri: str) -> tuple[str | None, Any]:
        """The serving image (built and pushed unless given) and the registered model."""
        from mldeploy.model_uri import materialize

        cfg = self.cfg
        with materialize(model_uri) as model_dir:
            image: str | None = None
            if cfg.environment is EnvironmentKind.CUSTOM:
                image = cfg.image or self._build(name, model_uri, model_dir)
            mname, version = model_name(name, model_uri)
            if version is not None and self._model_exists(mname, version):
                self.say(f"model {mname}:{version} is registered already")
                return image, self.ml.models.get(mname, version)
            version = version or self._next_version(mname)
            self.say(f"registering model {mname}:{version} (mlflow_model)")
            model = self.ml.models.create_or_update(
                sp.model(cfg, mname, version, str(model_dir), model_uri, name))
        tx.record(Resource("model", model.id), lambda: self.delete_model(mname, version))
        return image, model

    def _build(self, name: str, model_uri: str, model_dir: Any) -> str:
        registry = self.cfg.registry or self._workspace_registry()
        req = _image.request(self.cfg, name, model_uri, model_dir, registry)
        if self.c.build_image is not None:
            return self.c.build_image(req, lambda m: self.say(m))
        token = self.ml._credential.get_token("https://management.azure.com/.default").token
        password = _image.acr_refresh_token(registry, token, self.c.http)
        return _image.docker_push(req, password, lambda m: self.say(m))

    def _workspace_registry(self) -> str:
        ws = self.ml.workspaces.get(self.ml.workspace_name)
        acr = (ws.container_registry or "").rstrip("/").rsplit("/", 1)[-1]
        if not acr:
            raise UsageError("the workspace has no container registry yet",
                             hint="give -C registry=NAME.azurecr.io or -C image=...")
        return f"{acr.lower()}.azurecr.io"

    def _model_exists(self, name: str, version: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.ml.models.get(name, version)
            return True
        except ResourceNotFoundError:
            return False

    def _next_version(self, name: str) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            versions = [int(m.version) for m in self.ml.models.list(name=name)
                        if str(m.version).isdigit()]
        except ResourceNotFoundError:
            versions = []
        return str(max(versions, default=0) + 1)

    def delete_model(self, name: str, version: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.ml.models._model_versions_operation.delete(
                self.ml.resource_group_name, self.ml.workspace_name, name, version)
        except ResourceNotFoundError:
            pass

    def create_endpoint(self, tx: Transaction, name: str) -> Any:
        self.say(f"creating online endpoint {name}", Status.CREATING)
        with quiet():
            poller = self.ml.online_endpoints.begin_create_or_update(sp.endpoint(self.cfg, name))
            tx.record(Resource("endpoint", name), lambda: self.delete_endpoint(name))
            ep = self._wait(poller, tx, f"while endpoint {name} was being created")
        tx.records[-1].resource = Resource("endpoint", ep.id)
        return ep

    def create_deployment(self, tx: Transaction, ep: Any, dname: str, model: Any,
                          image: str | None, model_uri: str, *, seq: int) -> Any:
        from azure.core.exceptions import HttpResponseError

        name = ep.name
        spec = sp.deployment(self.cfg, name, dname, model, image, model_uri, seq)
        self.say(f"creating deployment {dname} ({self.cfg.instance_count} x "
                 f"{self.cfg.instance_type})", Status.CREATING)
        with quiet():
            poller = self.ml.online_deployments.begin_create_or_update(spec)
        rid = f"{ep.id}/deployments/{dname}"
        tx.record(Resource("deployment", rid), lambda: self.delete_deployment(name, dname))

        def _with_logs(_exc: BaseException) -> None:
            tail = self.logs(name, dname)
            if tail:
                tx.detail = f"\nlast lines of {dname}'s log:\n{tail}"
        tx.on_failure(_with_logs)
        try:
            with quiet():
                dep = self._wait(poller, tx, f"while deployment {dname} was being provisioned")
        except HttpResponseError as exc:
            message = getattr(getattr(exc, "error", None), "message", None) or str(exc)
            raise StepFailed(f"deployment {dname} failed: {scrub(message, 400)}") from None
        self.check_healthy(name, dname)
        return dep

    def set_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> None:
        ep = self.ml.online_endpoints.get(name)
        ep.traffic = dict(traffic)
        ep.mirror_traffic = dict(mirror)
        with quiet():
            self.ml.online_endpoints.begin_create_or_update(ep).result()

    def hold(self, seconds: float, tx: Transaction) -> None:
        if seconds <= 0:
            return
        if tx.deadline is not None and tx.remaining() < seconds:
            raise StepTimedOut(f"after {tx.timeout:g} s (waiting between traffic steps)")
        time.sleep(seconds)

    def check_healthy(self, name: str, dname: str) -> None:
        dep = self.ml.online_deployments.get(dname, name)
        state = state_of(dep)
        if state.lower() != "succeeded":
            raise StepFailed(f"deployment {dname} is {state or 'in an unknown state'}")

    def delete_deployment(self, name: str, dname: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        self.say(f"deleting deployment {dname}", Status.UPDATING)
        try:
            with quiet():
                self.ml.online_deployments.begin_delete(dname, name).result()
        except ResourceNotFoundError:
            pass

    def delete_endpoint(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        self.say(f"deleting online endpoint {name}", Status.DELETING)
        try:
            with quiet():
                self.ml.online_endpoints.begin_delete(name=name).result()
        except ResourceNotFoundError:
            pass

    def _wait(self, poller: Any, tx: Transaction, what: str) -> Any:
        poller.wait(timeout=tx.remaining() or None)
        if not poller.done():
            raise StepTimedOut(f"after {tx.timeout:g} s {what}")
        return poller.result()


__all__ = ["Ops", "model_name", "planned_image", "quiet", "state_of"]
