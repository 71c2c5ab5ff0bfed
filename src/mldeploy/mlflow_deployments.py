"""Every mldeploy target as an MLflow deployments plugin: ``mlflow deployments ... -t mldeploy-X``.

MLflow finds a plugin through the ``mlflow.deployments`` entry-point group; the value is a
*module* that holds ``run_local``, ``target_help`` and exactly one ``BaseDeploymentClient``
subclass (``mlflow/deployments/plugin_manager.py`` counts them with ``inspect.getmembers``). Each
target ships that module as ``mldeploy.plugins.<target>.mlflow_plugin``, a few lines over this one::

    from mlflow.deployments import BaseDeploymentClient
    from mldeploy.mlflow_deployments import DeploymentClientMixin, plugin_functions

    class SageMakerDeploymentClient(DeploymentClientMixin, BaseDeploymentClient):
        target = "sagemaker"

    run_local, target_help = plugin_functions("sagemaker")

The mixin is *not* a ``BaseDeploymentClient`` subclass, so importing it into the module does not
count as a second client class. ``mlflow.deployments`` and the ``mlflow`` command come with
mlflow-skinny, a core dependency; importing this module imports neither.

How MLflow's words map onto mldeploy's:

=====================================  ===========================================================
``create_deployment(name, uri)``       ``mldeploy.deploy(mode="create")``
``update_deployment(name, uri)``       ``mode="replace"``; without a URI the current model is kept
``create_deployment(..., endpoint=E)``  a variant ``name`` of the deployment ``E`` (``mode="add"``,
                                       or ``create`` when ``E`` does not exist yet), where the
                                       target has variants
``delete_deployment`` / ``_endpoint``  ``mldeploy.delete`` (idempotent)
``list_deployments`` / ``_endpoints``  ``mldeploy.list_deployments``: dicts with ``name``
``predict``                            ``mldeploy.invoke`` -> ``PredictionsResponse``
``update_endpoint(E, {"traffic":..})``  ``mldeploy.traffic`` (``"blue=9,green=1"``)
=====================================  ===========================================================

Config values arrive as strings (``-C key=value``) and go through the target's typed config:
an unknown key is an error naming the nearest valid one (MLflow's own SageMaker client ignores
them). Every mldeploy error is raised as an ``MlflowException`` carrying mldeploy's message and
hint.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mldeploy.errors import (
    DeploymentNotFoundError,
    MldeployError,
    UsageError,
)

PREFIX = "mldeploy-"
FLAVOR = "python_function"


def _mlflow_exception(err: MldeployError) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2 as codes

    if isinstance(err, DeploymentNotFoundError):
        code = codes.RESOURCE_DOES_NOT_EXIST
    elif isinstance(err, UsageError):
        code = codes.INVALID_PARAMETER_VALUE
    else:
        code = codes.INTERNAL_ERROR
    return MlflowException(str(err), error_code=code)


@contextlib.contextmanager
def mlflow_errors() -> Iterator[None]:
    """Raise mldeploy's errors as ``MlflowException`` (message and hint kept, no traceback
    chained to the caller's terminal)."""
    try:
        yield
    except MldeployError as err:
        raise _mlflow_exception(err) from None


def parse_target_uri(target_uri: str, target: str) -> str:
    """``mldeploy-sagemaker:/us-east-1`` -> ``sagemaker:/us-east-1`` (mldeploy's target spec)."""
    uri = (target_uri or "").strip()
    if uri.lower().startswith(PREFIX):
        uri = uri[len(PREFIX):]
    name, sep, location = uri.partition(":")
    if name.lower() != target:
        raise UsageError(
            f"target URI {target_uri!r} is not for the {target} target",
            hint=f"write it as {PREFIX}{target} or {PREFIX}{target}:/LOCATION",
        )
    location = location.strip("/")
    return f"{target}:/{location}" if sep and location else target


def _check_flavor(flavor: str | None) -> str:
    if flavor not in (None, "", FLAVOR):
        raise UsageError(
            f"flavor {flavor!r} cannot be deployed by mldeploy",
            hint=f"mldeploy serves every model as {FLAVOR}: omit --flavor",
        )
    return FLAVOR


def _config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """MLflow's ``-C`` dict as mldeploy's config: dotted keys (``-C env.TEAM=risk``,
    ``-C data_capture_config.destination_s3_uri=s3://...``) become sections, as on mldeploy's own
    CLI (MLflow hands them over flat)."""
    from mldeploy.config import merge, parse_assignments

    plain: dict[str, Any] = {}
    dotted: list[str] = []
    for key, value in (config or {}).items():
        key = str(key)
        if "." in key and isinstance(value, str):
            dotted.append(f"{key}={value}")
        else:
            plain[key] = value
    return merge(plain, parse_assignments(dotted)) if dotted else plain


def _result(deployment: Any) -> dict[str, Any]:
    out = deployment.to_dict()
    out.setdefault("name", deployment.name)
    out["flavor"] = FLAVOR
    return out


class DeploymentClientMixin:
    """The methods of MLflow's ``BaseDeploymentClient`` over mldeploy's Python API. A target's
    plugin module combines it with ``BaseDeploymentClient`` and sets ``target``."""

    target: str = ""
    target_uri: str

    # BaseDeploymentClient.__init__ stores target_uri; the spec is derived lazily so a wrong URI
    # is an MlflowException from the first call, with mldeploy's message.
    @property
    def _spec(self) -> str:
        with mlflow_errors():
            return parse_target_uri(self.target_uri, self.target)

    def _variant_key(self) -> str:
        from mldeploy.config import config_keys
        from mldeploy.registry import get_target_class

        with mlflow_errors():
            cls = get_target_class(self.target)
            if "variant_name" not in config_keys(cls.config_class):
                raise UsageError(
                    f"the {self.target} target has no endpoints with several deployments",
                    hint="omit --endpoint and name the deployment with --name",
                )
        return "variant_name"

    def _exists(self, name: str) -> bool:
        import mldeploy

        try:
            mldeploy.get(self._spec, name=name)
            return True
        except DeploymentNotFoundError:
            return False

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        import mldeploy

        with mlflow_errors():
            flavor = _check_flavor(flavor)
            cfg = _config(config)
            mode = "create"
            deploy_name = name
            if endpoint:
                cfg[self._variant_key()] = name
                deploy_name = endpoint
                mode = "add" if self._exists(endpoint) else "create"
            dep = mldeploy.deploy(self._spec, name=deploy_name, model_uri=model_uri, mode=mode,
                                  config=cfg)
            out = _result(dep)
            out["name"] = name
            return out

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        import mldeploy

        with mlflow_errors():
            _check_flavor(flavor)
            cfg = _config(config)
            deploy_name = name
            if endpoint:
                cfg[self._variant_key()] = name
                deploy_name = endpoint
            if not model_uri:
                current = mldeploy.get(self._spec, name=deploy_name)
                model_uri = _current_model(current, name if endpoint else None)
            dep = mldeploy.deploy(self._spec, name=deploy_name, model_uri=model_uri,
                                  mode="replace", config=cfg)
            out = _result(dep)
            out["name"] = name
            return out

    def delete_deployment(self, name, config=None, endpoint=None):
        import mldeploy

        with mlflow_errors():
            if endpoint:
                raise UsageError(
                    "deleting one deployment of an endpoint is done by moving its traffic away",
                    hint=f"set its weight to 0 with update-endpoint -C traffic=..., or delete "
                         f"the endpoint {endpoint!r}",
                )
            mldeploy.delete(self._spec, name=name, config=_config(config) or None)
        return None

    def list_deployments(self, endpoint=None):
        import mldeploy

        with mlflow_errors():
            if endpoint:
                dep = mldeploy.get(self._spec, name=endpoint)
                return [{"name": v.name, "endpoint": endpoint, "weight": v.weight,
                         "model_uri": v.model_uri, "flavor": FLAVOR} for v in dep.variants]
            return [_result(d) for d in mldeploy.list_deployments(self._spec)]

    def get_deployment(self, name, endpoint=None):
        import mldeploy

        with mlflow_errors():
            if endpoint:
                dep = mldeploy.get(self._spec, name=endpoint)
                for v in dep.variants:
                    if v.name == name:
                        return {"name": v.name, "endpoint": endpoint, "weight": v.weight,
                                "model_uri": v.model_uri, "flavor": FLAVOR,
                                "status": dep.status.value}
                raise DeploymentNotFoundError(
                    f"endpoint {endpoint!r} has no deployment {name!r}",
                    hint="known: " + (", ".join(v.name for v in dep.variants) or "none"),
                )
            return _result(mldeploy.get(self._spec, name=name))

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        from mlflow.deployments import PredictionsResponse

        import mldeploy

        with mlflow_errors():
            if endpoint and deployment_name:
                name, variant = endpoint, deployment_name
            else:
                name, variant = endpoint or deployment_name, None
            if not name:
                raise UsageError("no deployment named", hint="pass --name or --endpoint")
            pred = mldeploy.invoke(self._spec, name=name, data=inputs, variant=variant)
            return PredictionsResponse({"predictions": pred.predictions})

    # -- endpoints: mldeploy's deployments seen as MLflow endpoints ---------------------------

    def create_endpoint(self, name, config=None):
        with mlflow_errors():
            raise UsageError(
                "mldeploy creates an endpoint together with its first deployment",
                hint=f"run create --endpoint {name} --name NAME -m MODEL_URI",
            )

    def update_endpoint(self, endpoint, config=None):
        import mldeploy

        with mlflow_errors():
            cfg = _config(config)
            weights = cfg.pop("traffic", None)
            if weights is None or cfg:
                raise UsageError(
                    "update-endpoint takes only the traffic weights",
                    hint="pass -C traffic=VARIANT=WEIGHT,VARIANT=WEIGHT",
                )
            mldeploy.traffic(self._spec, name=endpoint, weights=weights)

    def delete_endpoint(self, endpoint):
        return self.delete_deployment(endpoint)

    def list_endpoints(self):
        return self.list_deployments()

    def get_endpoint(self, endpoint):
        return self.get_deployment(endpoint)


def _current_model(dep: Any, variant: str | None) -> str:
    if variant is not None:
        for v in dep.variants:
            if v.name == variant and v.model_uri:
                return v.model_uri
    elif dep.model_uri:
        return dep.model_uri
    raise UsageError(
        f"cannot tell which model {dep.name!r} serves",
        hint="pass the model with -m MODEL_URI",
    )


# ``run-local``'s -C keys: the ``mldeploy serve`` flags they become.
_RUN_LOCAL_FLAGS = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "threads": "--threads",
    "timeout": "--timeout",
    "engine": "--engine",
}


def run_local_command(model_uri: str, config: Mapping[str, Any] | None) -> list[str]:
    """The ``mldeploy serve`` command line ``run-local`` runs."""
    cfg = _config(config)
    unknown = sorted(set(cfg) - set(_RUN_LOCAL_FLAGS))
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], list(_RUN_LOCAL_FLAGS), n=1)
        raise UsageError(
            f"unknown run-local config key {unknown[0]!r}"
            + (f" (did you mean {near[0]!r}?)" if near else ""),
            hint="run-local takes " + ", ".join(sorted(_RUN_LOCAL_FLAGS)),
        )
    argv = [sys.executable, "-m", "mldeploy.cli", "serve", "-m", model_uri]
    for key, value in cfg.items():
        argv += [_RUN_LOCAL_FLAGS[key], str(value)]
    return argv


def plugin_functions(target: str) -> tuple[Callable[..., None], Callable[[], str]]:
    """The module-level ``run_local`` and ``target_help`` MLflow requires of a plugin."""

    def run_local(name, model_uri, flavor=None, config=None):
        """Serve the model on this machine with ``mldeploy serve`` (in the foreground)."""
        with mlflow_errors():
            _check_flavor(flavor)
            argv = run_local_command(model_uri, config)
        proc = subprocess.Popen(argv)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            code = proc.wait()
        if code not in (0, -15):
            from mlflow.exceptions import MlflowException

            raise MlflowException(f"mldeploy serve exited with code {code} (its log is above)")

    def target_help() -> str:
        return help_text(target)

    run_local.__qualname__ = run_local.__name__
    return run_local, target_help


def help_text(target: str) -> str:
    """``mlflow deployments help -t mldeploy-TARGET``: the target URI and every ``-C`` key with
    its type, default and help, from the target's typed config."""
    from mldeploy.config import describe_config
    from mldeploy.registry import get_target_class

    with mlflow_errors():
        cls = get_target_class(target)
    rows = describe_config(cls.config_class)
    width = max((len(r["key"]) for r in rows), default=0)
    lines = [
        f"mldeploy's {target} target. Target URI: {PREFIX}{target} or "
        f"{PREFIX}{target}:/LOCATION (the same location as mldeploy's -t {target}:/LOCATION).",
        "The model is served by mldeploy's serving container as python_function.",
        "Unknown -C keys are errors. Config keys (-C key=value):",
    ]
    for r in rows:
        default = "" if r["default"] in (None, "", [], {}) else f" [default: {r['default']}]"
        lines.append(f"  {r['key']:<{width}}  {r['type']}: {r['help']}{default}")
    lines.append("--endpoint names the deployment and --name its variant, where the target "
                 "has variants; update-endpoint -C traffic=A=9,B=1 sets their weights.")
    lines.append("run-local -C keys: " + ", ".join(sorted(_RUN_LOCAL_FLAGS)) + ".")
    return "\n".join(lines)


__all__ = [
    "DeploymentClientMixin",
    "help_text",
    "mlflow_errors",
    "parse_target_uri",
    "plugin_functions",
    "run_local_command",
]
