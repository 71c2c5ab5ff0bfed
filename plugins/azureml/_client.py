"""The Azure ML calls, on the real azure-ai-ml SDK (every SDK call of the target is here).

:class:`Clients` is what tests hand in (``AzureMLTarget(..., clients=Clients(ml_client=...))``);
:func:`connect` builds the real one: ``DefaultAzureCredential`` (environment service principal,
workload identity, managed identity including ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, Azure
CLI), ``MLClient`` for the named cloud, or for the private cloud ``ARM_CLOUD_METADATA_URL``
describes (the SDK's own mechanism). TLS trust is the standard ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from mldeploy.errors import TargetError, UsageError

# Tags mldeploy puts on what it makes.
MANAGED_BY = "managed-by"
MODEL_URI = "mldeploy.model-uri"
VERSION = "mldeploy.version"
ENDPOINT_TAG = "mldeploy.endpoint"

@dataclass
class Clients:
    """The SDK client and the HTTP session ``invoke`` uses; ``build_image`` is the image
    service's builder seam (default: build with Docker and push)."""

    ml_client: Any
    http: Any = field(default_factory=requests.Session)
    build_image: Callable[..., str] | None = None


def connect(subscription: str, resource_group: str, workspace: str,
            cloud: str | None) -> Clients:
    """The real client: no credential is stored or read from mldeploy's config."""
    metadata_url = os.environ.get("ARM_CLOUD_METADATA_URL")
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    if metadata_url and cloud is None:
        _private_cloud(metadata_url)  # the SDK picks that cloud itself; refuse a silent miss
    kwargs: dict[str, Any] = {}
    if cloud:
        kwargs["cloud"] = cloud
    # exclude_interactive_browser_credential is the default: a CLI never opens a browser.
    credential = DefaultAzureCredential()
    ml = MLClient(credential, subscription, resource_group, workspace, **kwargs)
    return Clients(ml_client=ml)


def _private_cloud(metadata_url: str) -> str:
    """The cloud the SDK loaded from ``ARM_CLOUD_METADATA_URL``; the SDK only logs a warning when
    the fetch fails and falls back to public Azure, which must not pass silently."""
    from azure.ai.ml import _azure_environments as envs

    clouds = envs._get_clouds_by_metadata_url(metadata_url)  # the SDK's own reader (cached)
    if not clouds:
        raise UsageError(f"ARM_CLOUD_METADATA_URL={metadata_url} gave no cloud metadata",
                         hint="check the URL is reachable and answers the Azure Stack "
                              "metadata format, or unset it and pass -C cloud=...")
    for name, meta in clouds.items():
        if meta.get(envs.EndpointURLS.RESOURCE_MANAGER_ENDPOINT, "").rstrip("/") in metadata_url:
            return name
    return next(iter(clouds))


def post_json(http: Any, url: str, body: bytes, content_type: str, headers: dict[str, str],
              timeout: float) -> tuple[int, bytes, str]:
    """POST to a scoring URI; headers are built for this one call (the SDK's own ``invoke``
    shares a class-level header dict, so a deployment header could leak into later calls)."""
    try:
        resp = http.post(url, data=body, headers={"Content-Type": content_type, **headers},
                         timeout=timeout)
    except requests.RequestException as exc:
        raise TargetError(f"cannot reach the scoring URI {url}: {type(exc).__name__}",
                          hint="check the endpoint is public (public_network_access) and "
                               "reachable from here") from None
    return resp.status_code, resp.content, resp.headers.get("Content-Type", "")


__all__ = ["Clients", "ENDPOINT_TAG", "MANAGED_BY", "MODEL_URI", "VERSION", "connect",
           "post_json"]
