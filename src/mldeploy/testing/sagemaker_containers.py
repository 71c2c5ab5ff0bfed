"""An offline SageMaker whose endpoints run their real containers on the local Docker engine.

:class:`ContainerSageMakerEmulator` is :class:`~mldeploy.testing.moto_sagemaker.SageMakerEmulator`
(moto's control plane with UpdateEndpoint, Creating / Updating / Deleting, refusals as on AWS)
plus what SageMaker itself does with a model:

- **CreateEndpoint**: each production variant's model gets ``InitialInstanceCount`` containers of
  its image, started as SageMaker starts them (``docker run IMAGE serve``, the model's
  ``Environment``, its ``ModelDataUrl`` tarball unpacked from the emulated S3 and mounted
  read-only at ``/opt/ml/model``, ``SAGEMAKER_BIND_TO_PORT`` set, host network, 127.0.0.1). The
  endpoint is ``Creating`` until every container answers ``/ping`` (and at least
  ``creating_seconds``), then ``InService``; a container that exits or never passes ``/ping`` in
  ``startup_seconds`` makes it ``Failed`` with SageMaker's FailureReason and the container's log
  in CloudWatch Logs (``/aws/sagemaker/Endpoints/NAME``).
- **UpdateEndpoint**: the new config's containers are started while the endpoint is ``Updating``;
  if they do not get healthy the update is rolled back (the old containers keep serving).
- **InvokeEndpoint**: forwarded to one of the variant's containers (round robin), so boto3's
  ``invoke_endpoint`` gets the model's own answers and its errors as ``ModelError``.
- **CreateTransformJob** (see :mod:`mldeploy.testing.transform_jobs`): the job's records from
  the emulated S3 go to a container of its model in mini-batches, with the job's ContentType
  and Accept; the answers are written back to S3 as ``KEY.out``; the container is stopped when
  the job ends. One container, whatever ``InstanceCount`` says.
- **DeleteModel** stops the model's containers (labelled ``io.mldeploy.emulator=MODEL`` and
  ``io.mldeploy.emulator.owner=PID``, the emulator's process); :meth:`stop` stops every
  container it started.

``mldeploy emulate sagemaker`` runs this behind a moto server on 127.0.0.1 (see
:func:`serve_forever`). The image must be in the local engine (``mldeploy build-docker -n IMG``
and ``-C image_uri=IMG``): nothing is pulled.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.testing._moto_parts import ContainerError, write_logs
from mldeploy.testing.aws import free_port
from mldeploy.testing.moto_sagemaker import SageMakerEmulator

LABEL = "io.mldeploy.emulator"  # value: the model's name
# value: the process id of the emulator that started the container, so that two emulators on
# one engine (parallel test runs, a user's own `mldeploy emulate`) tell their containers apart
OWNER_LABEL = "io.mldeploy.emulator.owner"


def owned_by(pid: int) -> dict[str, list[str]]:
    """The Docker ``filters`` that select the containers the emulator in process ``pid`` runs."""
    return {"label": [LABEL, f"{OWNER_LABEL}={pid}"]}
# top-level Describe* keys SageMaker omits when unset (moto answers {})
_UNSET_WHEN_EMPTY = ("DataCaptureConfig", "VpcConfig", "AsyncInferenceConfig",
                     "ExplainerConfig")


class ContainerStartError(Exception):
    def __init__(self, reason: str, logs: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.logs = logs


@dataclass
class _Instance:
    container: Any
    port: int


@dataclass
class _ModelFleet:
    instances: list[_Instance] = field(default_factory=list)
    model_dir: str | None = None
    turn: Any = None

    def next(self) -> _Instance:
        if self.turn is None:
            self.turn = itertools.cycle(range(len(self.instances)))
        return self.instances[next(self.turn) % len(self.instances)]


def _model_data(backend: Any, url: str, dst: Path) -> None:
    """Unpack ``s3://bucket/key`` (a ``model.tar.gz``) from moto's S3 into ``dst``."""
    from moto.s3.models import s3_backends

    if not url.startswith("s3://"):
        raise ContainerStartError(f"ModelDataUrl {url!r} is not an S3 URL", [])
    bucket, _, key = url[5:].partition("/")
    s3 = s3_backends[backend.account_id]["global"]
    try:
        body = s3.get_object(bucket, key).value
    except Exception:  # moto raises its own MissingKey/MissingBucket
        raise ContainerStartError(f"Could not find model data at {url}.", []) from None
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
        tar.extractall(dst, filter="data")


class ContainerSageMakerEmulator(SageMakerEmulator):
    """The emulator with real containers behind its endpoints (see the module docstring)."""

    def __init__(self, docker_client: Any, *, startup_seconds: float = 240.0,
                 log: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(responder=self._respond, **kwargs)
        self.docker = docker_client
        self.startup_seconds = startup_seconds
        self.log = log or (lambda line: None)
        self._fleets: dict[str, _ModelFleet] = {}
        self._fleet_lock = threading.RLock()
        self._workdir = Path(tempfile.mkdtemp(prefix="mldeploy-emulator-"))
        self._workdir.chmod(0o755)  # the image's server runs as uid 10001: it must read models

    # -- containers -------------------------------------------------------------------------

    def _find_model(self, name: str) -> tuple[Any, Any]:
        from moto.sagemaker.models import sagemaker_backends

        for account in list(sagemaker_backends):
            for region in list(sagemaker_backends[account]):
                backend = sagemaker_backends[account][region]
                model = backend._models.get(name)
                if model is not None:
                    return backend, model
        raise ContainerStartError(f"Could not find model {name}.", [])

    def ensure(self, model_name: str, count: int = 1) -> _ModelFleet:
        """At least ``count`` healthy containers of ``model_name`` (started here if missing)."""
        with self._fleet_lock:
            fleet = self._fleets.setdefault(model_name, _ModelFleet())
            missing = count - len(fleet.instances)
            if missing <= 0:
                return fleet
            backend, model = self._find_model(model_name)
            spec = model.primary_container or (model.containers or [{}])[0]
            image = spec.get("Image")
            if fleet.model_dir is None and spec.get("ModelDataUrl"):
                dst = self._workdir / model_name
                dst.mkdir(parents=True, exist_ok=True)
                _model_data(backend, spec["ModelDataUrl"], dst)
                fleet.model_dir = str(dst)
            for _ in range(missing):
                fleet.instances.append(self._start(model_name, image, spec.get("Environment")
                                                   or {}, fleet.model_dir))
            fleet.turn = None
            return fleet

    def _start(self, model_name: str, image: str, env: dict[str, str],
               model_dir: str | None) -> _Instance:
        from docker.errors import DockerException, ImageNotFound

        try:
            self.docker.images.get(image)
        except ImageNotFound:
            raise ContainerStartError(
                f"The image {image} of model {model_name} is not in the local Docker engine "
                "(the emulator pulls nothing: build it with mldeploy build-docker -n IMAGE)",
                []) from None
        port = free_port()
        volumes = {model_dir: {"bind": "/opt/ml/model", "mode": "ro"}} if model_dir else {}
        try:
            container = self.docker.containers.run(
                image, ["serve"], detach=True, network_mode="host", volumes=volumes,
                environment={**env, "SAGEMAKER_BIND_TO_PORT": str(port),
                             "MLDEPLOY_HOST": "127.0.0.1"},
                labels={LABEL: model_name, OWNER_LABEL: str(os.getpid())})
        except DockerException as exc:
            raise ContainerStartError(f"The container of model {model_name} did not start: "
                                      f"{str(exc)[:300]}", []) from None
        self.log(f"started {container.short_id} for model {model_name} on 127.0.0.1:{port}")
        deadline = time.monotonic() + self.startup_seconds
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        return _Instance(container, port)
            except OSError:
                pass
            container.reload()
            if container.status in ("exited", "dead") or time.monotonic() > deadline:
                lines = self._logs(container)
                self._remove(container)
                raise ContainerStartError(
                    f"The primary container for model {model_name} did not pass the ping "
                    "health check. Please check CloudWatch logs for this endpoint.", lines)
            time.sleep(0.3)

    @staticmethod
    def _logs(container: Any, tail: int = 50) -> list[str]:
        try:
            text = container.logs(tail=tail).decode("utf-8", "replace")
        except Exception:  # the container is gone
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except Exception:  # already gone
            pass

    def stop_model(self, model_name: str) -> None:
        with self._fleet_lock:
            fleet = self._fleets.pop(model_name, None)
        if fleet is None:
            return
        for inst in fleet.instances:
            self._remove(inst.container)
        if fleet.model_dir:
            shutil.rmtree(fleet.model_dir, ignore_errors=True)
        self.log(f"stopped the containers of model {model_name}")

    def _respond(self, endpoint: str, variant: str, model: str, body: bytes,
                 content_type: str = "application/json") -> tuple[bytes, str]:
        return self._post(model, body, {"Content-Type": content_type})

    def _post(self, model: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, str]:
        """``/invocations`` of one of ``model``'s containers (started if there is none)."""
        import urllib.error

        try:
            inst = self.ensure(model).next()
        except ContainerStartError as exc:
            raise ContainerError(500, exc.reason) from None
        req = urllib.request.Request(f"http://127.0.0.1:{inst.port}/invocations", data=body,
                                     method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.read(), r.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            raise ContainerError(exc.code, exc.read().decode("utf-8", "replace")) from None

    def transform_send(self, model: str, body: bytes, content_type: str,
                       accept: str | None) -> bytes:
        """A transform job's mini-batch to a container of ``model`` (started on the first one,
        as SageMaker starts the job's instances), with the job's ``Accept``."""
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        return self._post(model, body, headers)[0]

    def transform_done(self, model: str) -> None:
        """The job's instances go away with the job (unless an endpoint serves the model)."""
        from moto.sagemaker.models import sagemaker_backends

        for account in list(sagemaker_backends):
            for region in list(sagemaker_backends[account]):
                backend = sagemaker_backends[account][region]
                for ep in list(backend.endpoints.values()):
                    config = backend.endpoint_configs.get(ep.endpoint_config_name)
                    if config and any(v.get("ModelName") == model
                                      for v in config.production_variants):
                        return
        self.stop_model(model)

    # -- the control plane ------------------------------------------------------------------

    def _bring_up(self, backend: Any, ep: Any, variants: list[dict[str, Any]], seconds: float,
                  done: Callable[[ContainerStartError | None], None]) -> None:
        started = time.monotonic()
        error: ContainerStartError | None = None
        try:
            for v in variants:
                count = int(v.get("CurrentInstanceCount") or v.get("InitialInstanceCount") or 1)
                self.ensure(v["ModelName"], count)
        except ContainerStartError as exc:
            error = exc
        except Exception as exc:  # the engine itself failed: report, never kill the server
            error = ContainerStartError(f"The emulator could not start containers: {exc}", [])
        rest = seconds - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)
        with self._lock:
            done(error)
        if error is not None:
            self.log(f"endpoint {ep.endpoint_name}: {error.reason}")

    def _start_create(self, backend: Any, ep: Any) -> None:
        ep.endpoint_status = "Creating"
        self._schedule(backend, ep.endpoint_name, None, lambda: None)  # held until up

        def done(error: ContainerStartError | None) -> None:
            self._forget(backend, ep.endpoint_name)
            if error is None:
                ep.endpoint_status = "InService"
            else:
                ep.endpoint_status, ep.failure_reason = "Failed", error.reason
                write_logs(backend, ep, error.logs or [error.reason])

        config = backend.endpoint_configs[ep.endpoint_config_name]
        threading.Thread(target=self._bring_up, daemon=True,
                         args=(backend, ep, list(config.production_variants),
                               self.creating_seconds, done)).start()

    def _update(self, backend: Any, name: str, config_name: str, retain: bool,
                exclude: list[dict[str, str]], deployment_config: Any) -> str:
        # the base class applies the new config when its transition is released: hold it
        # until the new containers are healthy, or roll back when they are not
        self._hang_update = True
        try:
            arn = super()._update(backend, name, config_name, retain, exclude, deployment_config)
        finally:
            self._hang_update = False
        with self._lock:
            transition = self._pending[self._key(backend, name)]
        ep = backend.endpoints[name]
        new = backend.endpoint_configs[config_name]

        def done(error: ContainerStartError | None) -> None:
            if error is not None:
                def rollback() -> None:
                    ep.__dict__.pop("pending_deployment_summary", None)
                    ep.endpoint_status, ep.failure_reason = "InService", error.reason
                    write_logs(backend, ep, error.logs or [error.reason])
                transition.final = rollback
            transition.until = 0.0
            self._advance(backend)

        threading.Thread(target=self._bring_up, daemon=True,
                         args=(backend, ep, list(new.production_variants),
                               self.updating_seconds, done)).start()
        return arn

    def start(self) -> None:
        super().start()
        from moto.sagemaker import models as m

        b = m.SageMakerModelBackend
        patched = b.delete_model
        em = self

        def delete_model(self_: Any, model_name: str) -> None:
            patched(self_, model_name)
            em.stop_model(model_name)

        self._saved.append((b, "delete_model", b.__dict__.get("delete_model")))
        b.delete_model = delete_model
        self._omit_unset_configs()
        self._simulate_principal_policy()

    def _simulate_principal_policy(self) -> None:
        """IAM SimulatePrincipalPolicy, which moto lacks (an HTML 500) and the SageMaker SDK v3
        calls to validate ``role_arn`` before ModelBuilder deploys: every action is allowed for
        a role that exists (moto enforces no policy), NoSuchEntity for one that does not."""
        from moto.core.responses import ActionResult
        from moto.iam.responses import IamResponse

        def simulate_principal_policy(self_: Any) -> ActionResult:
            source = self_._get_param("PolicySourceArn") or ""
            if ":role/" in source:
                self_.backend.get_role(source.split(":role/", 1)[1].split("/")[-1])
            actions = self_._get_param("ActionNames") or []
            return ActionResult({"EvaluationResults": [
                {"EvalActionName": a, "EvalResourceName": "*", "EvalDecision": "allowed",
                 "MatchedStatements": [], "MissingContextValues": []} for a in actions],
                "IsTruncated": False})

        self._saved.append((IamResponse, "simulate_principal_policy",
                            IamResponse.__dict__.get("simulate_principal_policy")))
        IamResponse.simulate_principal_policy = simulate_principal_policy

    def _omit_unset_configs(self) -> None:
        """Describe* leave out a config that was never set, as SageMaker does: moto answers
        ``"DataCaptureConfig": {}`` / ``"VpcConfig": {}``, which the SageMaker SDK v3's typed
        resources refuse (``Endpoint.get`` fails validating an empty DataCaptureConfig)."""
        from moto.core.responses import ActionResult
        from moto.sagemaker.responses import SageMakerResponse

        def omitting(original: Callable[..., Any]) -> Callable[..., Any]:
            def describe(self_: Any) -> Any:
                out = original(self_)
                body = out.result if isinstance(out, ActionResult) else None
                if isinstance(body, dict) and any(body.get(k) == {} for k in _UNSET_WHEN_EMPTY):
                    body = {k: v for k, v in body.items()
                            if not (k in _UNSET_WHEN_EMPTY and v == {})}
                    return ActionResult(body)
                return out
            return describe

        for op in ("describe_model", "describe_endpoint", "describe_endpoint_config"):
            self._saved.append((SageMakerResponse, op, SageMakerResponse.__dict__.get(op)))
            setattr(SageMakerResponse, op, omitting(getattr(SageMakerResponse, op)))

    def stop(self) -> None:
        super().stop()
        for name in list(self._fleets):
            self.stop_model(name)
        shutil.rmtree(self._workdir, ignore_errors=True)


def serve_forever(port: int, *, docker_client: Any, creating_seconds: float = 0.0,
                  updating_seconds: float = 0.0, deleting_seconds: float = 0.0,
                  startup_seconds: float = 240.0, echo: Callable[[str], None] = print,
                  stop: threading.Event | None = None) -> None:
    """A moto server on 127.0.0.1:``port`` with :class:`ContainerSageMakerEmulator`, until
    ``stop`` is set (or KeyboardInterrupt)."""
    from mldeploy.testing.aws import moto_server

    stop = stop or threading.Event()
    emulator = ContainerSageMakerEmulator(
        docker_client, startup_seconds=startup_seconds, creating_seconds=creating_seconds,
        updating_seconds=updating_seconds, deleting_seconds=deleting_seconds,
        log=lambda line: echo(f"emulator: {line}"))
    with moto_server(port) as url, emulator:
        for line in (f"export AWS_ENDPOINT_URL={url}", "export AWS_ACCESS_KEY_ID=testing",
                     "export AWS_SECRET_ACCESS_KEY=testing", "export AWS_DEFAULT_REGION=us-east-1"):
            echo(line)
        echo(f"emulator: SageMaker, S3, ECR, IAM, STS and CloudWatch Logs on {url} "
             "(Ctrl-C stops it and every container it started)")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


__all__ = ["ContainerSageMakerEmulator", "ContainerStartError", "serve_forever"]
