"""The Python API. Every function takes a target as a spec string (``"sagemaker"``,
``"sagemaker:/eu-west-1"``) or a ready :class:`~mldeploy.target.Target`, and raises only
:mod:`mldeploy.errors` exceptions::

    import mldeploy
    dep = mldeploy.deploy("sagemaker", name="churn", model_uri="models:/churn/3", mode="replace",
                          config={"instance_type": "ml.m5.large"})
    mldeploy.invoke("sagemaker", name="churn", data=df).predictions

``config`` is a mapping (strings are converted: ``{"instance_count": "2"}`` works) merged over
``config_file`` (JSON, YAML or TOML), or the target's typed config object.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mldeploy.errors import UsageError
from mldeploy.target import (
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    Progress,
    Target,
    Transform,
)

TargetLike = str | Target


def resolve_target(
    target: TargetLike,
    config: Any = None,
    *,
    config_file: str | Path | None = None,
    progress: Progress | None = None,
    clients: Any = None,
) -> Target:
    """A :class:`Target` from a spec and config; a Target instance is returned as it is."""
    if isinstance(target, Target):
        if config is not None or config_file is not None:
            raise UsageError(
                "config was given together with a ready Target object",
                hint="pass the config when building the Target, or pass the target by name",
            )
        return target
    if not isinstance(target, str) or not target.strip():
        raise UsageError("no target given", hint="pass a target name such as 'sagemaker'")
    from mldeploy.config import load_config_file, merge
    from mldeploy.registry import get_target

    if config_file is not None and config is not None and not isinstance(config, Mapping):
        raise UsageError(
            "a typed config object cannot be merged with a config file",
            hint="pass config as a mapping, or put every key in the typed config",
        )
    if config_file is not None or isinstance(config, Mapping):
        layers = [load_config_file(config_file) if config_file is not None else None, config]
        config = merge(*layers)
    return get_target(target, config, progress=progress, clients=clients)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UsageError("no deployment name given", hint="pass name=... (--name on the CLI)")
    return name.strip()


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return timeout


def deploy(
    target: TargetLike,
    *,
    name: str,
    model_uri: str,
    mode: DeployMode | str = DeployMode.CREATE,
    config: Any = None,
    config_file: str | Path | None = None,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float | None = None,
    progress: Progress | None = None,
    clients: Any = None,
) -> Deployment | Plan:
    """Create, replace or add to a deployment; with ``dry_run`` return the :class:`Plan`."""
    mode = DeployMode.parse(mode)
    name = _check_name(name)
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise UsageError("no model URI given", hint="pass model_uri=... (-m on the CLI)")
    t = resolve_target(target, config, config_file=config_file, progress=progress, clients=clients)
    return t.deploy(
        mode, name, model_uri.strip(), dry_run=dry_run, wait=wait, timeout=_check_timeout(timeout)
    )


def delete(
    target: TargetLike,
    *,
    name: str,
    config: Any = None,
    config_file: str | Path | None = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: Progress | None = None,
    clients: Any = None,
) -> Deletion:
    """Delete a deployment and everything mldeploy created for it. Idempotent."""
    t = resolve_target(target, config, config_file=config_file, progress=progress, clients=clients)
    return t.delete(_check_name(name), wait=wait, timeout=_check_timeout(timeout))


def get(
    target: TargetLike,
    *,
    name: str,
    config: Any = None,
    config_file: str | Path | None = None,
    clients: Any = None,
) -> Deployment:
    t = resolve_target(target, config, config_file=config_file, clients=clients)
    return t.get(_check_name(name))


def list_deployments(
    target: TargetLike,
    *,
    config: Any = None,
    config_file: str | Path | None = None,
    clients: Any = None,
) -> list[Deployment]:
    t = resolve_target(target, config, config_file=config_file, clients=clients)
    return t.list()


def invoke(
    target: TargetLike,
    *,
    name: str,
    data: Any,
    content_type: str | None = None,
    variant: str | None = None,
    config: Any = None,
    config_file: str | Path | None = None,
    clients: Any = None,
) -> Prediction:
    """Send ``data`` (DataFrame, dict/list, numpy array, str or bytes) to the deployment."""
    t = resolve_target(target, config, config_file=config_file, clients=clients)
    return t.invoke(_check_name(name), data, content_type=content_type, variant=variant)


def traffic(
    target: TargetLike,
    *,
    name: str,
    weights: Mapping[str, float] | str,
    config: Any = None,
    config_file: str | Path | None = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: Progress | None = None,
    clients: Any = None,
) -> Deployment:
    """Set the traffic weights between a deployment's variants, e.g. ``{"blue": 9, "green": 1}``."""
    weights = parse_weights(weights)
    t = resolve_target(target, config, config_file=config_file, progress=progress, clients=clients)
    return t.traffic(_check_name(name), weights, wait=wait, timeout=_check_timeout(timeout))


def transform(
    target: TargetLike,
    *,
    name: str,
    model_uri: str,
    job: Mapping[str, Any] | Any,
    config: Any = None,
    config_file: str | Path | None = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: Progress | None = None,
    clients: Any = None,
) -> Transform:
    """Score stored data with ``model_uri`` as a batch job on ``target`` (SageMaker Batch
    Transform: ``job={"input": "s3://b/in/", "output": "s3://b/out/", ...}``)."""
    t = resolve_target(target, config, config_file=config_file, progress=progress, clients=clients)
    return t.transform(_check_name(name), model_uri, job, wait=wait,
                       timeout=_check_timeout(timeout))


def parse_weights(weights: Mapping[str, Any] | str) -> dict[str, float]:
    """``{"a": 1, "b": "3"}`` or ``"a=1,b=3"`` -> ``{"a": 1.0, "b": 3.0}``, checked."""
    if isinstance(weights, str):
        pairs = [p for p in weights.split(",") if p.strip()]
        parsed: dict[str, Any] = {}
        for p in pairs:
            k, sep, v = p.partition("=")
            if not sep or not k.strip():
                raise UsageError(
                    f"cannot read weight {p!r}",
                    hint="write weights as VARIANT=WEIGHT,VARIANT=WEIGHT",
                )
            parsed[k.strip()] = v.strip()
        weights = parsed
    if not isinstance(weights, Mapping) or not weights:
        raise UsageError("no traffic weights given", hint="e.g. blue=9,green=1")
    out: dict[str, float] = {}
    for k, v in weights.items():
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"weight of {k!r} is not a number: {v!r}") from None
        if w < 0:
            raise UsageError(f"weight of {k!r} is negative: {w}", hint="weights are >= 0")
        out[str(k)] = w
    if sum(out.values()) <= 0:
        raise UsageError("all traffic weights are zero", hint="give at least one variant a weight")
    return out


__all__ = [
    "delete",
    "deploy",
    "get",
    "invoke",
    "list_deployments",
    "parse_weights",
    "resolve_target",
    "traffic",
    "transform",
]
