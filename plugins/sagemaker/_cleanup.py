"""Removing what a deployment no longer uses: each resource on its own (one that cannot be
removed is reported and the rest still go), and mldeploy's models, configs and artifacts of an
endpoint that serve nothing (left by a ``--no-wait`` replace, a crash or an interrupted run)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mldeploy.errors import MldeployError
from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker._resources import Current
from mldeploy.target import Resource

Say = Callable[[str], None]


def remove_each(c: aws.Clients, resources: Iterable[Resource], say: Say,
                ) -> tuple[list[Resource], list[Resource]]:
    """(removed, left over)."""
    removed, leftover = [], []
    for r in resources:
        try:
            aws.remove(c, r.kind, r.id)
            removed.append(r)
        except MldeployError as exc:
            say(f"could not remove {r}: {exc.message}")
            leftover.append(r)
    return removed, leftover


def unused(c: aws.Clients, name: str, bucket: str, live: Current | None) -> list[Resource]:
    """mldeploy's models, endpoint configs and artifacts for ``name`` that ``live`` (the
    endpoint as it is now, None if absent) does not use."""
    in_use_models = live.model_names() if live else set()
    in_use_cfg = {live.config_name} if live else set()
    urls = {m.get("PrimaryContainer", {}).get("ModelDataUrl") for m in
            (live.models.values() if live else [])}
    owned = aws.managed_resources(c, name)
    doomed = [Resource("endpoint-config", x["EndpointConfigArn"]) for x in owned["configs"]
              if x["EndpointConfigName"] not in in_use_cfg]
    doomed += [Resource("model", x["ModelArn"]) for x in owned["models"]
               if x["ModelName"] not in in_use_models]
    doomed += [Resource("s3-object", f"s3://{bucket}/{k}")
               for k in aws.list_keys(c, bucket, f"mldeploy/{name}/")
               if f"s3://{bucket}/{k}" not in urls]
    return doomed


__all__ = ["remove_each", "unused"]
