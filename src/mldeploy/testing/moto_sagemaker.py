"""moto's SageMaker made realistic enough to test deployments offline.

moto 5.2.5 has no ``UpdateEndpoint``, puts every endpoint ``InService`` at once, overwrites
resources created twice, and answers ``InvokeEndpoint`` with canned data for endpoints that do
not exist. While a :class:`SageMakerEmulator` is active (in-process ``mock_aws`` and
``ThreadedMotoServer`` alike, since both share moto's backends) it adds:

- ``UpdateEndpoint`` with AWS's semantics: the endpoint must be InService, the config must
  exist, a real-time endpoint cannot become serverless; ``Updating`` (with
  ``PendingDeploymentSummary``) for ``updating_seconds``, then the new config, or on an injected
  failure a rollback to the old config with ``FailureReason`` set. ``RetainAllVariantProperties``
  keeps the weights and instance counts of variants whose names stay.
- ``Creating`` for ``creating_seconds``, then ``InService`` or (injected) ``Failed``; failures
  also write container log lines to CloudWatch Logs under ``/aws/sagemaker/Endpoints/NAME``.
- ``Deleting`` for ``deleting_seconds``; an update that never ends (``hang_next_update``).
- Creating a model, endpoint config or endpoint whose name exists is refused, as on AWS.
- ``strict``: deleting a model or endpoint config that a live endpoint uses or is updating to is
  refused (AWS allows it and breaks the endpoint later; a deployment tool should never do it).
- ``InvokeEndpoint`` refuses unknown or not-ready endpoints and answers through ``responder``:
  by default ``{"predictions": [MODEL_NAME, ...]}``, one per input row, naming the model of the
  variant that served, so a test can see which model answered. ``container_responder(URL)``
  forwards to a real serving container on 127.0.0.1 instead (its 4xx/5xx become SageMaker's
  424 ``ModelError`` with ``OriginalStatusCode``). ``fail_next_invoke`` fakes a model error.

Use it as a context manager around ``mock_aws()`` or a running ``ThreadedMotoServer``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mldeploy.testing._moto_parts import (
    ContainerError,
    container_responder,
    default_responder,
    invoke_async_response,
    invoke_response,
    write_logs,
)

# (endpoint, variant, model name, body, content type) -> (body, content type); raise
# ContainerError for a non-2xx answer
Responder = Callable[[str, str, str, bytes, str], tuple[bytes, str]]


@dataclass
class _Transition:
    until: float | None  # None: until released
    final: Callable[[], None]


class SageMakerEmulator:
    def __init__(self, *, creating_seconds: float = 0.0, updating_seconds: float = 0.0,
                 deleting_seconds: float = 0.0, strict: bool = True,
                 responder: Responder | None = None) -> None:
        self.creating_seconds = creating_seconds
        self.updating_seconds = updating_seconds
        self.deleting_seconds = deleting_seconds
        self.strict = strict
        self.responder = responder or default_responder
        self.update_requests: list[dict[str, Any]] = []  # the UpdateEndpoint calls accepted
        self._fail_create: tuple[str, list[str]] | None = None
        self._fail_update: tuple[str, list[str]] | None = None
        self._fail_invoke: tuple[int, str] | None = None
        self._hang_update = False
        self._refused: set[str] = set()
        self._pending: dict[tuple[str, str, str], _Transition] = {}
        self._lock = threading.RLock()
        self._saved: list[tuple[Any, str, Any]] = []

    # -- failure injection ------------------------------------------------------------------------

    def fail_next_create(self, reason: str = "The primary container for production variant "
                         "primary did not pass the ping health check.",
                         logs: list[str] | None = None) -> None:
        self._fail_create = (reason, list(logs or ["container exited with code 1"]))

    def fail_next_update(self, reason: str = "The primary container for production variant "
                         "primary did not pass the ping health check.",
                         logs: list[str] | None = None) -> None:
        self._fail_update = (reason, list(logs or ["container exited with code 1"]))

    def hang_next_update(self) -> None:
        """The next update stays ``Updating`` until :meth:`release` is called."""
        self._hang_update = True

    def fail_next_invoke(self, status: int = 500, message: str = "model raised") -> None:
        self._fail_invoke = (status, message)

    def refuse_deletes(self, *names: str) -> None:
        """Deleting these models / endpoint configs fails with AccessDeniedException (as when
        the caller's IAM policy lacks sagemaker:DeleteModel): exercises cleanup that cannot
        finish and must report what it left."""
        self._refused.update(names)

    def allow_deletes(self) -> None:
        self._refused.clear()

    def release(self, name: str | None = None) -> None:
        """Finish hung transitions (of endpoint ``name``, or all) now."""
        with self._lock:
            for key, t in list(self._pending.items()):
                if name is None or key[2] == name:
                    t.until = 0.0

    # -- patching -------------------------------------------------------------------------------

    def __enter__(self) -> SageMakerEmulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        from moto.sagemaker import models as m
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        b = m.SageMakerModelBackend
        em = self

        def patch(owner: Any, attr: str, new: Any) -> None:
            self._saved.append((owner, attr, owner.__dict__.get(attr)))
            setattr(owner, attr, new)

        orig = {k: getattr(b, k) for k in (
            "create_model", "create_endpoint_config", "create_endpoint", "describe_endpoint",
            "delete_endpoint", "delete_endpoint_config", "delete_model", "list_endpoints",
            "update_endpoint_weights_and_capacities")}

        def create_model(self: Any, model_name: str, *a: Any, **k: Any) -> Any:
            em._refuse_existing(self, self._models, model_name, "model")
            return orig["create_model"](self, model_name, *a, **k)

        def create_endpoint_config(self: Any, endpoint_config_name: str, *a: Any,
                                   **k: Any) -> Any:
            em._refuse_existing(self, self.endpoint_configs, endpoint_config_name,
                                "endpoint configuration")
            return orig["create_endpoint_config"](self, endpoint_config_name, *a, **k)

        def create_endpoint(self: Any, endpoint_name: str, *a: Any, **k: Any) -> Any:
            em._advance(self)
            em._refuse_existing(self, self.endpoints, endpoint_name, "endpoint")
            ep = orig["create_endpoint"](self, endpoint_name, *a, **k)
            em._start_create(self, ep)
            return ep

        def describe_endpoint(self: Any, endpoint_name: str) -> Any:
            em._advance(self)
            return orig["describe_endpoint"](self, endpoint_name)

        def list_endpoints(self: Any, *a: Any, **k: Any) -> Any:
            em._advance(self)
            return orig["list_endpoints"](self, *a, **k)

        def delete_endpoint(self: Any, endpoint_name: str) -> None:
            em._advance(self)
            ep = self.endpoints.get(endpoint_name)
            if ep is None or em.deleting_seconds <= 0:
                em._forget(self, endpoint_name)
                return orig["delete_endpoint"](self, endpoint_name)
            ep.endpoint_status = "Deleting"
            em._schedule(self, endpoint_name, em.deleting_seconds,
                         lambda: self.endpoints.pop(endpoint_name, None))

        def delete_endpoint_config(self: Any, endpoint_config_name: str) -> None:
            em._advance(self)
            em._refuse_denied(endpoint_config_name, "DeleteEndpointConfig")
            em._refuse_in_use(self, lambda cfg, _: cfg == endpoint_config_name,
                              f"endpoint configuration {endpoint_config_name}")
            return orig["delete_endpoint_config"](self, endpoint_config_name)

        def delete_model(self: Any, model_name: str) -> None:
            em._advance(self)
            em._refuse_denied(model_name, "DeleteModel")

            def uses(cfg: str, backend: Any) -> bool:
                c = backend.endpoint_configs.get(cfg)
                return c is not None and any(v.get("ModelName") == model_name
                                             for v in c.production_variants)
            em._refuse_in_use(self, uses, f"model {model_name}")
            return orig["delete_model"](self, model_name)

        def update_weights(self: Any, endpoint_name: str, *a: Any, **k: Any) -> Any:
            em._advance(self)
            ep = self.endpoints.get(endpoint_name)
            if ep is not None and ep.endpoint_status != "InService":
                raise m.ValidationError(message=f"Cannot update in-progress endpoint "
                                        f"\"{ep.arn}\".")
            return orig["update_endpoint_weights_and_capacities"](self, endpoint_name, *a, **k)

        def update_endpoint_response(resp: Any) -> Any:
            from moto.core.responses import ActionResult

            arn = em._update(resp.sagemaker_backend, resp._get_param("EndpointName"),
                             resp._get_param("EndpointConfigName"),
                             bool(resp._get_param("RetainAllVariantProperties")),
                             resp._get_param("ExcludeRetainedVariantProperties") or [],
                             resp._get_param("DeploymentConfig"))
            return ActionResult({"EndpointArn": arn})

        def invoke(resp: Any) -> Any:
            return invoke_response(em, resp)

        for name, fn in (("create_model", create_model),
                         ("create_endpoint_config", create_endpoint_config),
                         ("create_endpoint", create_endpoint),
                         ("describe_endpoint", describe_endpoint),
                         ("list_endpoints", list_endpoints),
                         ("delete_endpoint", delete_endpoint),
                         ("delete_endpoint_config", delete_endpoint_config),
                         ("delete_model", delete_model),
                         ("update_endpoint_weights_and_capacities", update_weights)):
            patch(b, name, fn)
        patch(SageMakerResponse, "update_endpoint", update_endpoint_response)
        patch(SageMakerRuntimeResponse, "invoke_endpoint", invoke)
        patch(SageMakerRuntimeResponse, "invoke_endpoint_async",
              lambda resp: invoke_async_response(em, resp))
        from mldeploy.testing import transform_jobs

        transform_jobs.install(em, patch)  # transform jobs that read and write S3

    def transform_send(self, model: str, body: bytes, content_type: str,
                       accept: str | None) -> bytes:
        """A transform job's mini-batch to the model (``responder``; a subclass with real
        containers also passes ``accept``). Raises ContainerError on a non-2xx answer."""
        return self.responder("", "", model, body, content_type)[0]

    def transform_done(self, model: str) -> None:
        """A transform job of ``model`` ended (a subclass stops its instances)."""

    def stop(self) -> None:
        for owner, attr, old in reversed(self._saved):
            if old is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, old)
        self._saved.clear()

    # -- state machine --------------------------------------------------------------------------

    def _key(self, backend: Any, name: str) -> tuple[str, str, str]:
        return (backend.account_id, backend.region_name, name)

    def _schedule(self, backend: Any, name: str, seconds: float | None,
                  final: Callable[[], None]) -> None:
        with self._lock:
            until = None if seconds is None else time.monotonic() + seconds
            self._pending[self._key(backend, name)] = _Transition(until, final)
        if seconds is not None and seconds <= 0:
            self._advance(backend)

    def _forget(self, backend: Any, name: str) -> None:
        with self._lock:
            self._pending.pop(self._key(backend, name), None)

    def _advance(self, backend: Any) -> None:
        now = time.monotonic()
        with self._lock:
            for key, t in list(self._pending.items()):
                if key[:2] == self._key(backend, "")[:2] and t.until is not None and t.until <= now:
                    del self._pending[key]
                    t.final()

    def _refuse_existing(self, backend: Any, existing: dict[str, Any], name: str,
                         kind: str) -> None:
        from moto.sagemaker.models import ValidationError

        self._advance(backend)
        if name in existing:
            raise ValidationError(message=f"Cannot create already existing {kind} \"{name}\".")

    def _refuse_denied(self, name: str, action: str) -> None:
        from moto.sagemaker.exceptions import SagemakerClientError

        if name in self._refused:
            class AccessDenied(SagemakerClientError):
                code = "AccessDeniedException"
            raise AccessDenied(f"User is not authorized to perform: sagemaker:{action} on "
                               f"resource {name} (injected by the mldeploy emulator)")

    def _refuse_in_use(self, backend: Any, uses: Callable[[str, Any], bool], what: str) -> None:
        from moto.sagemaker.models import ValidationError

        if not self.strict:
            return
        for ep in backend.endpoints.values():
            if ep.endpoint_status == "Deleting":
                continue
            pending = (getattr(ep, "pending_deployment_summary", None) or {}).get(
                "EndpointConfigName")
            for cfg in filter(None, (ep.endpoint_config_name, pending)):
                if uses(cfg, backend):
                    raise ValidationError(
                        message=f"(mldeploy emulator, strict) {what} is in use by endpoint "
                                f"{ep.endpoint_name} ({ep.endpoint_status}); delete or update "
                                "the endpoint first")

    def _start_create(self, backend: Any, ep: Any) -> None:
        fail, self._fail_create = self._fail_create, None
        ep.endpoint_status = "Creating"

        def final() -> None:
            if fail is None:
                ep.endpoint_status = "InService"
            else:
                ep.endpoint_status, ep.failure_reason = "Failed", fail[0]
                write_logs(backend, ep, fail[1])
        self._schedule(backend, ep.endpoint_name, self.creating_seconds, final)

    def _update(self, backend: Any, name: str, config_name: str, retain: bool,
                exclude: list[dict[str, str]], deployment_config: Any) -> str:
        from moto.sagemaker.models import FakeEndpoint, ValidationError

        self._advance(backend)
        ep = backend.endpoints.get(name)
        if ep is None:
            arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find endpoint \"{arn}\".")
        if ep.endpoint_status != "InService":
            raise ValidationError(message=f"Cannot update in-progress endpoint \"{ep.arn}\".")
        new = backend.endpoint_configs.get(config_name)
        if new is None:
            raise ValidationError(message=f"Could not find endpoint configuration "
                                          f"\"{config_name}\".")
        old = backend.endpoint_configs.get(ep.endpoint_config_name)
        old_serverless = old is not None and any(
            "ServerlessConfig" in v for v in old.production_variants)
        if not old_serverless and any("ServerlessConfig" in v for v in new.production_variants):
            raise ValidationError(message="Cannot update an endpoint from instance-based to "
                                          "serverless.")
        self.update_requests.append({"EndpointName": name, "EndpointConfigName": config_name,
                                     "RetainAllVariantProperties": retain,
                                     "DeploymentConfig": deployment_config})
        self._refuse_autoscaled_type_change(backend, name, old, new)
        fail, self._fail_update = self._fail_update, None
        hang, self._hang_update = self._hang_update, False
        ep.endpoint_status, ep.failure_reason = "Updating", None
        ep.pending_deployment_summary = {"EndpointConfigName": config_name}
        excluded = {e.get("VariantPropertyType") for e in exclude}

        def final() -> None:
            from moto.core.utils import utcnow

            ep.__dict__.pop("pending_deployment_summary", None)
            ep.last_modified_time = utcnow()
            if fail is not None:
                ep.endpoint_status, ep.failure_reason = "InService", fail[0]
                write_logs(backend, ep, fail[1])
                return
            before = {v["VariantName"]: v for v in ep.production_variants}
            variants = ep._process_production_variants(new.production_variants)
            if retain:
                for v in variants:
                    kept = before.get(v["VariantName"], {})
                    for k in ("CurrentWeight", "DesiredWeight"):
                        if k in kept and "DesiredWeight" not in excluded:
                            v[k] = kept[k]
                    for k in ("CurrentInstanceCount", "DesiredInstanceCount"):
                        if k in kept and "DesiredInstanceCount" not in excluded:
                            v[k] = kept[k]
            ep.production_variants = variants
            ep.endpoint_config_name = config_name
            ep.data_capture_config = new.data_capture_config
            ep.endpoint_status = "InService"
        self._schedule(backend, name, None if hang else self.updating_seconds, final)
        return ep.arn

    def _refuse_autoscaled_type_change(self, backend: Any, name: str, old: Any, new: Any) -> None:
        """AWS: an update that changes the instance type of an autoscaled variant fails."""
        from moto.applicationautoscaling.models import applicationautoscaling_backends
        from moto.sagemaker.models import ValidationError

        if old is None:
            return
        aas = applicationautoscaling_backends[backend.account_id][backend.region_name]
        scaled = aas.targets.get("sagemaker:variant:DesiredInstanceCount", {})
        before = {v["VariantName"]: v.get("InstanceType") for v in old.production_variants}
        for v in new.production_variants:
            rid = f"endpoint/{name}/variant/{v['VariantName']}"
            if rid in scaled and v["VariantName"] in before and before[
                    v["VariantName"]] != v.get("InstanceType"):
                raise ValidationError(message=f"The variant {v['VariantName']} is a target of "
                                      "automatic scaling; its instance type cannot change.")



from mldeploy.testing.aws import reset_backends, sagemaker_inventory  # noqa: E402

__all__ = ["ContainerError", "SageMakerEmulator", "container_responder", "default_responder",
           "reset_backends", "sagemaker_inventory"]
