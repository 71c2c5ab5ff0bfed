"""Push a local image to Amazon ECR (or any registry that ECR's API fronts) with the docker SDK.

Authentication uses boto3's ``ecr.get_authorization_token`` (no aws CLI, nothing written to the
docker config); the repository is created when missing. ``AWS_ENDPOINT_URL_ECR`` /
``AWS_ENDPOINT_URL`` point boto3 at an emulator. Progress is reported per layer state change.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from mldeploy.errors import BuildError, ConfigError, MissingExtraError

from .options import PushResult

Log = Callable[[str], None]
_ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def parse_repository_uri(uri: str) -> tuple[str, str, str | None]:
    """``REGISTRY/REPOSITORY[:TAG]`` -> (registry, repository, tag or None)."""
    host, sep, rest = uri.partition("/")
    if not sep or not ("." in host or ":" in host or host == "localhost"):
        raise ConfigError(
            f"{uri!r} names no registry",
            hint="use REGISTRY/REPOSITORY[:TAG], e.g. "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-model:1",
        )
    repo, tag = rest, None
    if ":" in rest.rsplit("/", 1)[-1]:
        repo, tag = rest.rsplit(":", 1)
    if not _REPO.match(repo) or (tag is not None and not _TAG.match(tag)):
        raise ConfigError(f"invalid repository or tag in {uri!r}",
                          hint="repository: lowercase letters, digits, . _ - /; tag: up to 128 "
                          "letters, digits, . _ -")
    return host, repo, tag


def _ecr_client(region: str | None) -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingExtraError("boto3 is not installed",
                         hint="pip install 'mldeploy[sagemaker]'") from None
    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    if not session.region_name:
        raise ConfigError("no AWS region for ECR",
                          hint="pass --region, set AWS_DEFAULT_REGION, or push to an ECR URI "
                          "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO)")
    return session.client("ecr")


def _aws_error(exc: Exception, doing: str) -> BuildError:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return BuildError(f"no AWS credentials to {doing}",
                          hint="configure credentials (AWS_PROFILE, environment or instance role)")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        return BuildError(f"ECR refused to {doing} ({code})",
                          hint="check the region, the account and the IAM permissions for ECR")
    return BuildError(f"cannot reach ECR to {doing} ({type(exc).__name__})",
                      hint="check the network and AWS_ENDPOINT_URL settings")


def ensure_repository(ecr: Any, repository: str, *, create: bool, log: Log) -> bool:
    """Return True when the repository had to be created."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ecr.describe_repositories(repositoryNames=[repository])
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            raise _aws_error(exc, f"describe repository {repository}") from None
    except BotoCoreError as exc:
        raise _aws_error(exc, f"describe repository {repository}") from None
    if not create:
        raise BuildError(f"ECR repository {repository} does not exist",
                         hint="create it, or push without --no-create-repository")
    try:
        ecr.create_repository(repositoryName=repository,
                              imageScanningConfiguration={"scanOnPush": True})
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(exc, f"create repository {repository}") from None
    log(f"created ECR repository {repository}")
    return True


def _credentials(ecr: Any) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(exc, "get an authorization token") from None
    except (KeyError, IndexError):
        raise BuildError("ECR returned no authorization data",
                         hint="check the ECR endpoint and permissions") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {"username": user, "password": password}


def _stream_push(client: Any, repo_ref: str, tag: str, auth: dict[str, str], log: Log,
                 ) -> str | None:
    from docker.errors import APIError

    digest = None
    states: dict[str, str] = {}
    try:
        for chunk in client.api.push(repo_ref, tag=tag, auth_config=auth, stream=True,
                                     decode=True):
            if "error" in chunk:
                detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"])
                hint = ("the registry refused the credentials: check the repository's account, "
                        "region and IAM permissions" if "denied" in detail.lower()
                        or "unauthorized" in detail.lower()
                        else "check that the registry is reachable and retry")
                raise BuildError(f"push of {repo_ref}:{tag} failed: {detail[:300]}", hint=hint)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = aux["Digest"]
            layer, status = chunk.get("id"), chunk.get("status", "")
            if layer and status and status != "Pushing" and states.get(layer) != status:
                states[layer] = status
                log(f"  {layer}: {status}")
    except APIError as exc:
        raise BuildError(f"push of {repo_ref}:{tag} failed: {exc.explanation or exc}",
                         hint="check that the registry is reachable and retry") from None
    return digest


def push_image(
    image: str,
    to: str,
    *,
    region: str | None = None,
    create_repository: bool = True,
    use_ecr: bool = True,
    ecr_client: Any | None = None,
    log: Log | None = None,
) -> PushResult:
    """Push local ``image`` to repository URI ``to`` (``REGISTRY/REPO[:TAG]``; the tag defaults to
    the image's own tag). With ``use_ecr`` the repository is created if missing and credentials
    come from ECR, through ``ecr_client`` when given (e.g. one made from an assumed role's
    session), else a client for the URI's region (ECR host), ``region`` or boto3's default."""
    from docker.errors import ImageNotFound

    from .build import docker_client

    say: Log = log or (lambda _m: None)
    registry, repository, tag = parse_repository_uri(to)
    client = docker_client()
    try:
        local = client.images.get(image)
    except ImageNotFound:
        raise BuildError(f"no image {image} on the Docker engine",
                         hint="build it first: mldeploy build-docker -n " + image) from None
    if tag is None:
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    created, auth = False, None
    if use_ecr:
        match = _ECR_HOST.match(registry)
        ecr = ecr_client or _ecr_client(region or (match["region"] if match else None))
        created = ensure_repository(ecr, repository, create=create_repository, log=say)
        auth = _credentials(ecr)
    repo_ref = f"{registry}/{repository}"
    local.tag(repo_ref, tag)
    say(f"pushing {image} to {repo_ref}:{tag}")
    digest = _stream_push(client, repo_ref, tag, auth or {}, say)
    say(f"pushed {repo_ref}:{tag}" + (f" ({digest})" if digest else ""))
    return PushResult(reference=f"{repo_ref}:{tag}", digest=digest, repository_uri=repo_ref,
                      created_repository=created)
