"""Endpoints mldeploy did not create (no ``mldeploy:endpoint=<their name>`` tag).

``replace``, ``add``, ``traffic`` and ``delete`` refuse them unless ``-C adopt=true``; ``create``
refuses any existing name. Adopting tags the endpoint once mldeploy has changed it, so it is
managed from then on; the endpoint configs and models it had stay (they are not mldeploy's, and
cleanup only ever removes resources tagged as mldeploy's). ``delete`` removes the configs and
models of an endpoint that mldeploy did not create only when no other endpoint uses them, and
never their model data in S3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mldeploy.errors import DeploymentExistsError, MldeployError
from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker._resources import TAG_ENDPOINT, Current
from mldeploy.plugins.sagemaker.errors import UnmanagedEndpointError, aws_errors, is_not_found
from mldeploy.target import Resource

Say = Callable[[str], None]
_ORDER = ("scalable-target", "endpoint", "endpoint-config", "model", "s3-object")


def check_managed(cur: Current, adopt: bool, verb: str) -> None:
    """Raise UnmanagedEndpointError when ``cur`` is not mldeploy's and ``adopt`` is off."""
    if cur.managed or adopt:
        return
    if verb == "delete":
        hint = ("re-run with -C adopt=true to delete it with the endpoint configs and models no "
                "other endpoint uses (model data in S3 stays), or delete it with the tool that "
                "created it")
    else:
        hint = ("re-run with -C adopt=true to let mldeploy take it over (it tags the endpoint "
                f"{TAG_ENDPOINT}={cur.name} and manages it from then on), or change it with "
                "the tool that created it")
    raise UnmanagedEndpointError(
        f"endpoint {cur.name!r} was not created by mldeploy: {verb} left it unchanged",
        hint=hint)


def exists_error(c: aws.Clients, name: str, ep: dict[str, Any]) -> DeploymentExistsError:
    """Why ``create`` refuses the existing endpoint described by ``ep``."""
    if not owned(c, name, ep["EndpointArn"]):
        return DeploymentExistsError(
            f"endpoint {name!r} already exists and was not created by mldeploy",
            hint="pick another name, or take it over with --mode replace -C adopt=true")
    extra = (" and is Failed; delete it first (mldeploy delete)"
             if ep["EndpointStatus"] == "Failed" else "")
    return DeploymentExistsError(f"endpoint {name!r} already exists{extra}",
                                 hint="use --mode replace to change its model")


def owned(c: aws.Clients, name: str, arn: str) -> bool:
    """Is the resource ``arn`` tagged as mldeploy's for endpoint ``name``?"""
    return aws.model_tags(c, arn).get(TAG_ENDPOINT) == name


def claim(c: aws.Clients, cur: Current | None, say: Say) -> None:
    """Tag the adopted endpoint ``cur`` as mldeploy's (nothing if it is already, or None).
    Called once the change went through; a failure to tag is reported, never raised: the change
    stands and the endpoint stays unmanaged."""
    if cur is None or cur.managed:
        return
    try:
        with aws_errors(f"tag endpoint {cur.name}"):
            c["sagemaker"].add_tags(ResourceArn=cur.arn,
                                    Tags=[{"Key": TAG_ENDPOINT, "Value": cur.name}])
    except MldeployError as exc:
        say(f"could not adopt endpoint {cur.name}: {exc.message}; it stays unmanaged (pass "
            "-C adopt=true again next time)")
        return
    cur.tags[TAG_ENDPOINT] = cur.name
    say(f"adopted endpoint {cur.name}: tagged {TAG_ENDPOINT}={cur.name}")


def to_delete(c: aws.Clients, cur: Current, parts: Iterable[Resource], say: Say,
              ) -> list[Resource]:
    """Of ``parts`` (what ``cur`` is made of), what deleting it removes, in removal order:
    all of mldeploy's; a config or model mldeploy did not create only when no other endpoint
    uses it (now or in a pending update); never the model data of such a model."""
    names = {m["ModelArn"]: ("model", n) for n, m in cur.models.items()}
    if cur.config.get("EndpointConfigArn"):
        names[cur.config["EndpointConfigArn"]] = ("endpoint-config", cur.config_name)
    foreign = {arn for arn in names if not owned(c, cur.name, arn)}
    data = {m.get("PrimaryContainer", {}).get("ModelDataUrl") for m in cur.models.values()
            if m["ModelArn"] in foreign}
    users = _users_elsewhere(c, cur.name) if foreign else {}
    out = []
    for r in parts:
        kind, rname = names.get(r.id, (r.kind, ""))
        user = users.get((kind, rname.lower())) if r.id in foreign else None
        if user:
            say(f"keeping {r}: endpoint {user} uses it")
        elif r.kind == "s3-object" and r.id in data:
            say(f"keeping {r}: model data of a model mldeploy did not create")
        else:
            out.append(r)
    return sorted(out, key=lambda r: _ORDER.index(r.kind))


def _users_elsewhere(c: aws.Clients, name: str) -> dict[tuple[str, str], str]:
    """(kind, lower-case name) of each endpoint config and model that an endpoint other than
    ``name`` uses -> that endpoint."""
    sm = c["sagemaker"]
    users: dict[tuple[str, str], str] = {}
    with aws_errors(f"find what other endpoints share with {name}"):
        for page in sm.get_paginator("list_endpoints").paginate():
            for e in page.get("Endpoints", []):
                other = e["EndpointName"]
                ep = None if other.lower() == name.lower() else _gone_is_none(
                    sm.describe_endpoint, EndpointName=other)
                pending = (ep or {}).get("PendingDeploymentSummary") or {}
                for cfg in {(ep or {}).get("EndpointConfigName"),
                            pending.get("EndpointConfigName")} - {None}:
                    users.setdefault(("endpoint-config", cfg.lower()), other)
                    desc = _gone_is_none(sm.describe_endpoint_config, EndpointConfigName=cfg)
                    for v in ((desc or {}).get("ProductionVariants", [])
                              + (desc or {}).get("ShadowProductionVariants", [])):
                        users.setdefault(("model", v["ModelName"].lower()), other)
    return users


def _gone_is_none(call: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any] | None:
    try:
        return call(**kwargs)
    except Exception as exc:  # deleted meanwhile: it uses nothing
        if not is_not_found(exc):
            raise
        return None


__all__ = ["check_managed", "claim", "exists_error", "owned", "to_delete"]
