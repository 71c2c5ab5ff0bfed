"""The SageMaker target: orchestration only (requests are built in ``_resources``, AWS calls made
in ``_client``, SDK errors translated in ``errors``).

Every create/replace/add runs in the core's transaction: each resource this run creates is
recorded with its removal; if the run fails, is rolled back by SageMaker, times out or is
interrupted, the core undoes them in reverse and the previous deployment keeps serving. Names
are content-hashed, so re-running the same command after a failure picks up where it stopped (a
leftover of an earlier run that is not serving is adopted into this run's transaction).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from mldeploy import images
from mldeploy.errors import (
    DeploymentFailedError,
    DeploymentNotFoundError,
    DeploymentTimeoutError,
    InvocationError,
    MldeployError,
    TargetError,
    UsageError,
)
from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker import _guard, _image
from mldeploy.plugins.sagemaker._cleanup import remove_each, unused
from mldeploy.plugins.sagemaker._plan import build_plan
from mldeploy.plugins.sagemaker._resources import (
    NAME_RULE,
    STATUS,
    TAG_MODEL_URI,
    Artifact,
    Current,
    Desired,
    base_model,
    build_desired,
    check_autoscaled_instance_type,
    to_deployment,
    update_request,
)
from mldeploy.plugins.sagemaker.config import SageMakerConfig
from mldeploy.plugins.sagemaker.errors import aws_errors, invocation_error
from mldeploy.target import (
    Capability,
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    Resource,
    Status,
    Target,
)
from mldeploy.transaction import StepFailed, StepTimedOut, Transaction

BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


class SageMakerTarget(Target):
    name = "sagemaker"
    config_class = SageMakerConfig
    config: SageMakerConfig
    capabilities = frozenset({Capability.ADD, Capability.TRAFFIC, Capability.NO_WAIT,
                              Capability.VARIANT_INVOKE, Capability.TRANSFORM})
    name_rule = NAME_RULE

    def _c(self) -> aws.Clients:
        if self.clients is None:
            self.clients = aws.Clients.create(self.location or self.config.region_name,
                                              self.config.assume_role_arn)
        elif not isinstance(self.clients, aws.Clients):  # a boto3 Session handed in
            self.clients = aws.Clients(self.clients)
        return self.clients

    def _workdir(self) -> Path:
        """A private temporary directory for this run's artifacts (the model's tarball),
        removed when the run ends, failed or not (:meth:`_drop_workdir`)."""
        if getattr(self, "_tmp", None) is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="mldeploy-sagemaker-")
        return Path(self._tmp.name)

    def _drop_workdir(self) -> None:
        tmp, self._tmp = getattr(self, "_tmp", None), None
        if tmp is not None:
            tmp.cleanup()

    def _bucket(self) -> str:
        c = self._c()
        return self.config.bucket or f"mldeploy-{c.account_id()}-{c.region}"

    # -- create / replace / add (the core's transaction is ``tx``) ------------------------------

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        return self._run(tx, DeployMode.CREATE, model_uri)

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        return self._run(tx, DeployMode.REPLACE, model_uri)

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:
        return self._run(tx, DeployMode.ADD, model_uri)

    def _prepare(self, mode: DeployMode, name: str, model_uri: str, model_dir: Path,
                 ) -> tuple[Current | None, Desired, _image.ImageBuild | None]:
        """Read the endpoint and work out this run's resources (the image to build included);
        read-only. ``model_dir`` is the model, lent by ``materialize()`` for the run."""
        c = self._c()
        ep = aws.describe_endpoint(c, name)
        if mode is DeployMode.CREATE and ep is not None:
            raise _guard.exists_error(c, name, ep)
        current = None if mode is DeployMode.CREATE else aws.read_current(c, name, ep)
        if current is not None:
            _guard.check_managed(current, self.config.adopt, mode.value)
        if current is not None and current.status in BUSY:
            raise TargetError(f"endpoint {name!r} is {current.status}",
                              hint="wait until it is InService (mldeploy get) and re-run")
        artifact = Artifact.pack(model_dir, self._workdir())
        bucket = self._bucket()
        base = None if current is None or current.status == "Failed" else current
        add = mode is DeployMode.ADD
        image = None
        if _image.needs_build(self.config, base_model(base, self.config.variant_name, add)):
            image = _image.plan_build(self.config, name, model_uri, model_dir,
                                      c.account_id(), c.region)
        desired = build_desired(self.config, name, model_uri, artifact, bucket, base, add=add,
                                built_image=image.reference if image else None)
        return current, desired, image

    def _run(self, tx: Transaction, mode: DeployMode, model_uri: str) -> Deployment:
        try:
            return self._run_steps(tx, mode, model_uri)
        finally:
            self._drop_workdir()

    def _run_steps(self, tx: Transaction, mode: DeployMode, model_uri: str) -> Deployment:
        from mldeploy.model_uri import materialize

        name = tx.name
        with materialize(model_uri) as model_dir:  # fetched once, removed after the build
            current, d, image = self._prepare(mode, name, model_uri, model_dir)
            c = self._c()
            failed = current is not None and current.status == "Failed"
            if failed and not self.config.recreate_failed:
                raise DeploymentFailedError(
                    f"endpoint {name!r} is Failed "
                    f"({current.failure_reason or 'no reason given'})",
                    hint="re-run with -C recreate_failed=true to delete and recreate it")
            if image is not None:  # before anything is created: a failed build leaves nothing
                pusher = c.push_image or functools.partial(_image.ecr_push, ecr=c["ecr"])
                _image.ensure_image(c, image, c.build_image or images.docker_build, pusher,
                                    self.progress)
        if failed:
            self.progress(f"{name} is Failed: deleting it to recreate it")
            self._delete(name, wait=True, timeout=tx.timeout)
            current, mode = None, DeployMode.CREATE
        tx.existed = current is not None
        if current is not None and current.config_name == d.config_name:
            self.progress(f"{name} already serves this model and config")
            return self._after_success(name, d, current)  # finishes an earlier run's cleanup
        if current is not None:
            check_autoscaled_instance_type(name, current, d)
        in_use = current.model_names() if current else set()
        in_use |= {m.get("PrimaryContainer", {}).get("ModelDataUrl", "")
                   for m in (current.models.values() if current else [])}
        tx.on_failure(functools.partial(self._on_failure, tx, current))
        self._materialise(tx, c, d, in_use)
        sm = c["sagemaker"]
        if current is None:
            with aws_errors(f"create endpoint {name}"):
                arn = sm.create_endpoint(EndpointName=name, EndpointConfigName=d.config_name,
                                         Tags=d.config_request["Tags"])["EndpointArn"]
            self._record(tx, c, Resource("endpoint", arn))
        else:
            retain = bool(current.scalable) or mode is DeployMode.ADD
            with aws_errors(f"update endpoint {name}"):
                sm.update_endpoint(**update_request(self.config, name, d.config_name, retain))
        self.progress(f"{mode.value} {name}: endpoint config {d.config_name}")
        if not tx.wait:
            _guard.claim(c, current, self.progress)
            return self.get(name)
        try:
            ep = self._wait(name, tx.remaining())
        except TimeoutError as exc:
            raise StepTimedOut(f"while the endpoint was {exc}") from None
        if ep is None or ep["EndpointStatus"] != "InService" or (
                ep["EndpointConfigName"] != d.config_name):
            raise StepFailed((ep or {}).get("FailureReason")
                             or "the endpoint did not become InService")
        return self._after_success(name, d, current)

    @staticmethod
    def _record(tx: Transaction, c: aws.Clients, r: Resource) -> None:
        tx.record(r, functools.partial(aws.remove, c, r.kind, r.id))

    def _on_failure(self, tx: Transaction, current: Current | None, exc: BaseException) -> None:
        """Before the core undoes ``tx``: keep what a still-running update uses, say what serves
        now, and add the endpoint's last log lines to a failure SageMaker reported."""
        c = self._c()
        kept = current is not None and aws.in_flight(c, tx.name)
        if kept:  # the update still runs and uses these: removing them would break the endpoint
            tx.keep(lambda r: r.kind in ("model", "endpoint-config", "s3-object"))
        still = ("the previous deployment is still serving" if current is not None
                 else "nothing is serving")
        if isinstance(exc, TimeoutError):
            tx.hint = (f"{still}; the update is still running on SageMaker: re-run the same "
                       "command later to finish or clean up" if kept else
                       f"{still}; raise --timeout")
            return
        tx.hint = still
        if isinstance(exc, StepFailed):
            logs = aws.log_tail(c, tx.name, self.config.log_lines)
            for line in logs:
                self.progress(f"log: {line}")
            if logs:
                tx.detail = " | last log lines: " + " / ".join(logs[-5:])

    def _materialise(self, tx: Transaction, c: aws.Clients, d: Desired,
                     in_use: set[str]) -> None:
        """Bucket, artifact, model and endpoint config: created if absent, adopted if left over
        by an earlier run (exists but serves nothing), kept out of ``tx`` if serving."""
        if d.uploads:
            self._upload(tx, c, d, in_use)
        for kind, name, request in (("model", d.model_name, d.model_request),
                                    ("endpoint-config", d.config_name, d.config_request)):
            arn, adopted = aws.create_or_adopt(c, kind, request)
            if kind == "endpoint-config" or name not in in_use:
                self._record(tx, c, Resource(kind, arn))
            self.progress(f"{'reusing' if adopted else 'created'} {kind} {name}")

    def _upload(self, tx: Transaction, c: aws.Clients, d: Desired, in_use: set[str]) -> None:
        if aws.ensure_bucket(c, d.bucket):
            self._record(tx, c, Resource("s3-bucket", f"s3://{d.bucket}"))
        uri = f"s3://{d.bucket}/{d.key}"
        if not aws.object_exists(c, d.bucket, d.key):
            self.progress(f"uploading {uri} ({d.artifact.size} bytes)")
            with aws_errors(f"upload {uri}"):  # multipart for large models
                c["s3"].upload_file(str(d.artifact.path), d.bucket, d.key)
        if uri not in in_use:
            self._record(tx, c, Resource("s3-object", uri))

    def _wait(self, name: str, timeout: float) -> dict[str, Any] | None:
        def report(status: str, reason: str) -> None:
            self.progress(f"{name}: {status}" + (f" ({reason})" if reason else ""),
                          STATUS.get(status, Status.UNKNOWN))

        return aws.wait_endpoint(self._c(), name, timeout=timeout,
                                 poll=self.config.poll_interval_seconds, report=report,
                                 done=lambda ep: ep["EndpointStatus"] not in BUSY)

    def _after_success(self, name: str, d: Desired, current: Current | None) -> Deployment:
        c = self._c()
        _guard.claim(c, current, self.progress)  # an adopted endpoint is mldeploy's from now on
        if self.config.autoscaling is not None:
            aws.register_autoscaling(c, name, d.variant, self.config.autoscaling)
            self.progress(f"autoscaling {name}/{d.variant}: {self.config.autoscaling.min_capacity}"
                          f"-{self.config.autoscaling.max_capacity} instances")
        if self.config.weights:
            self._traffic(name, dict(self.config.weights), wait=True,
                          timeout=self.config.timeout_seconds)
        live = aws.read_current(c, name)
        if current is not None:  # a create adopted any same-named leftovers in its ledger
            self._collect_garbage(name, live)
        return self._deployment(c, live)

    def _collect_garbage(self, name: str, live: Current | None = None,
                         ) -> tuple[list[Resource], list[Resource]]:
        """Remove mldeploy's models, configs and artifacts for ``name`` that serve nothing."""
        c = self._c()
        if live is None:
            ep = aws.describe_endpoint(c, name)
            live = aws.read_current(c, name, ep) if ep else None
        removed, leftover = remove_each(c, unused(c, name, self._bucket(), live), self.progress)
        for r in removed:
            self.progress(f"removed {r}")
        return removed, leftover

    # -- delete / get / list --------------------------------------------------------------------

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        c = self._c()
        ep = aws.describe_endpoint(c, name)
        removed: list[Resource] = []
        leftover: list[Resource] = []
        if ep is not None:
            cur = aws.read_current(c, name, ep)
            _guard.check_managed(cur, self.config.adopt, "delete")
            parts = _guard.to_delete(c, cur, self._deployment(c, cur).resources, self.progress)
            removed, leftover = remove_each(c, parts, self.progress)
            self.progress(f"deleting endpoint {name}", Status.DELETING)
            if wait:
                try:
                    aws.wait_endpoint(c, name, timeout=timeout,
                                      poll=self.config.poll_interval_seconds,
                                      report=lambda s, _: self.progress(f"{name}: {s}"),
                                      done=lambda _: False)
                except TimeoutError:
                    raise DeploymentTimeoutError(
                        f"endpoint {name} is still Deleting", hint="re-run delete later") from None
        more, left = self._collect_garbage(name)
        return Deletion(name, self.name, existed=ep is not None, removed=tuple(removed + more),
                        leftover=tuple(leftover + left))

    def _get(self, name: str) -> Deployment:
        """Any endpoint, read only; ``details["managed"]``: is it mldeploy's."""
        c = self._c()
        cur = aws.read_current(c, name)
        return self._deployment(c, cur)

    def _deployment(self, c: aws.Clients, cur: Current) -> Deployment:
        uris = {m: aws.model_tags(c, d["ModelArn"]).get(TAG_MODEL_URI)
                for m, d in cur.models.items()}
        return to_deployment(cur, self.name, c.region, uris)

    def _list(self) -> list[Deployment]:
        c = self._c()
        out = []
        for n in aws.list_endpoint_names(c):
            try:
                out.append(self._deployment(c, aws.read_current(c, n)))
            except DeploymentNotFoundError:  # deleted while listing
                continue
        return out

    # -- invoke / traffic / plan --------------------------------------------------------------

    def _invoke(self, name: str, body: bytes, ctype: str, variant: str | None) -> Prediction:
        kwargs: dict[str, Any] = {"EndpointName": name, "ContentType": ctype, "Body": body,
                                  "Accept": "application/json"}
        if variant:
            kwargs["TargetVariant"] = variant
        try:
            resp = self._c()["sagemaker-runtime"].invoke_endpoint(**kwargs)
        except MldeployError:
            raise
        except Exception as exc:
            err = invocation_error(exc, name)
            cur = aws.read_current(self._c(), name) if err.__class__ is InvocationError else None
            if cur is None or not cur.config.get("AsyncInferenceConfig"):
                raise err from None
            self.progress(f"{name} is asynchronous: sending the request through S3")
            out, otype = aws.invoke_async(self._c(), name, body, ctype, self._bucket(),
                                          timeout=self.config.timeout_seconds,
                                          poll=self.config.poll_interval_seconds)
            return Prediction.from_response(out, otype, variant=variant)
        return Prediction.from_response(resp["Body"].read(), resp.get("ContentType"),
                                        variant=resp.get("InvokedProductionVariant") or variant)

    def _traffic(self, name: str, weights: dict[str, float], *, wait: bool,
                 timeout: float) -> Deployment:
        c = self._c()
        cur = aws.read_current(c, name)
        _guard.check_managed(cur, self.config.adopt, "traffic")
        names = [v["VariantName"] for v in cur.config.get("ProductionVariants", [])]
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise UsageError(f"endpoint {name!r} has no variant {unknown[0]!r}",
                             hint=f"its variants: {', '.join(names)}")
        with aws_errors(f"set traffic weights of {name}", name=name):
            c["sagemaker"].update_endpoint_weights_and_capacities(
                EndpointName=name, DesiredWeightsAndCapacities=[
                    {"VariantName": v, "DesiredWeight": float(w)} for v, w in weights.items()])
        _guard.claim(c, cur, self.progress)
        self.progress(f"{name}: weights " + ", ".join(f"{v}={w}" for v, w in weights.items()))
        if wait:
            try:
                self._wait(name, timeout)
            except TimeoutError:
                raise DeploymentTimeoutError(f"{name} is still updating its weights",
                                             hint="mldeploy get shows when it is done") from None
        return self.get(name)

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        from mldeploy.model_uri import materialize

        try:
            with materialize(model_uri) as model_dir:
                current, d, image = self._prepare(mode, name, model_uri, model_dir)
        finally:
            self._drop_workdir()
        changes = build_plan(self._c(), mode, name, current, d, image, self.config.autoscaling)
        return Plan(self.name, name, mode, changes)

    # -- batch transform ------------------------------------------------------------------------

    def _transform(self, tx: Transaction, model_uri: str, job: Any) -> Any:
        from mldeploy.plugins.sagemaker import _transform

        return _transform.run(self, tx, model_uri, job)


__all__ = ["SageMakerTarget"]
