"""The serving image of a custom-container deployment.

``-C image=...`` runs that image. Otherwise the image builder (:mod:`mldeploy.images`, the one
``-C build.*`` block) builds the model's image, dependencies baked in so nothing is installed when
the container starts, tagged ``REGISTRY/NAME:<content digest>`` and pushed to ``-C registry`` or
the workspace's Azure Container Registry: the Azure AD token is exchanged for an ACR refresh
token (ACR's ``/oauth2/exchange``), which the Docker SDK pushes with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mldeploy import images
from mldeploy.errors import BuildError
from mldeploy.images import BuildOptions, ImageRequest
from mldeploy.plugins.azureml.config import AzureMLConfig

Log = Callable[[str], None]
ACR_USER = "00000000-0000-0000-0000-000000000000"  # ACR's user name for exchanged tokens


@dataclass(frozen=True)
class Image:
    reference: str
    built: bool
    model_digest: str = ""


def request(cfg: AzureMLConfig, name: str, model_uri: str, model_dir: Path,
            registry: str) -> ImageRequest:
    options = cfg.build or BuildOptions()
    return images.request(model_dir, model_uri, options,
                          lambda digest: f"{registry.rstrip('/')}/{name}:{digest[:20]}")


def acr_refresh_token(login_server: str, aad_token: str, http: Any) -> str:
    """Exchange an Azure AD access token for an ACR refresh token (the password that goes with
    :data:`ACR_USER`). A refused token is one :class:`BuildError` that says what to do; the
    token never appears in it."""
    import requests

    try:
        resp = http.post(f"https://{login_server}/oauth2/exchange",
                         data={"grant_type": "access_token", "service": login_server,
                               "access_token": aad_token}, timeout=60)
    except requests.RequestException as exc:
        raise BuildError(f"cannot reach the container registry {login_server} "
                         f"({type(exc).__name__})",
                         hint="check -C registry (NAME.azurecr.io), the network, and "
                              "REQUESTS_CA_BUNDLE if it uses a private CA") from None
    if resp.status_code == 401:
        raise BuildError(f"{login_server} refused the Azure AD token (401: expired, revoked or "
                         "from another tenant)",
                         hint="sign in again (az login) or check the identity "
                              "DefaultAzureCredential uses (AZURE_CLIENT_ID, managed identity), "
                              "then retry; -C image= deploys an image pushed already")
    if resp.status_code != 200:
        raise BuildError(f"{login_server} refused the Azure AD token ({resp.status_code})",
                         hint="the identity needs the AcrPush role on the registry")
    try:
        return str(resp.json()["refresh_token"])
    except (ValueError, KeyError, TypeError):
        raise BuildError(f"{login_server} answered the token exchange without a refresh token",
                         hint="check -C registry names an Azure Container Registry") from None


def docker_push(req: ImageRequest, password: str, log: Log) -> str:
    """Build ``req`` with the image builder and push it with the Docker SDK; returns the pushed
    reference pinned by digest when the registry reports one."""
    from mldeploy.container.image.build import docker_client

    images.docker_build(req, log)
    repo, tag = req.reference.rsplit(":", 1)
    client = docker_client()
    auth = {"username": ACR_USER, "password": password}
    digest = None
    for line in client.images.push(repo, tag=tag, auth_config=auth, stream=True, decode=True):
        if line.get("error"):
            raise BuildError(f"push of {req.reference} failed: {line['error'][:300]}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    log(f"pushed {req.reference}")
    return f"{repo}@{digest}" if digest else req.reference


__all__ = ["ACR_USER", "Image", "acr_refresh_token", "docker_push", "request"]
