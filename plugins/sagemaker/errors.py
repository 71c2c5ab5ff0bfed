"""AWS SDK errors -> mldeploy errors. No botocore exception leaves the plugin; messages carry the
AWS error code and message (never credentials or tracebacks) and say what to do next."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mldeploy.errors import (
    ConfigError,
    DeploymentNotFoundError,
    InvocationError,
    MldeployError,
    TargetError,
    UsageError,
    map_exceptions,
)
from mldeploy.errors import (
    invocation_error as container_error,
)
from mldeploy.redact import redact

_ACCESS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
           "UnrecognizedClientException", "SignatureDoesNotMatch", "AuthFailure"}


class UnmanagedEndpointError(UsageError):
    """The endpoint exists but mldeploy did not create it (it lacks the ``mldeploy:endpoint``
    tag naming it): replace, add, traffic and delete refuse it unless ``-C adopt=true``."""


def scrub(text: object, limit: int = 500) -> str:
    """A message from AWS for a user: :func:`mldeploy.redact.redact` clipped to ``limit``."""
    return redact(text, limit)


def is_not_found(exc: BaseException) -> bool:
    code, msg = _code(exc), _message(exc)
    return code in ("ResourceNotFound", "NoSuchEntity", "404", "NoSuchKey", "NoSuchBucket",
                    "ObjectNotFoundException") or (
        code == "ValidationException" and ("Could not find" in msg or "not found" in msg))


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) if hasattr(
        exc, "response") else ""


def _message(exc: BaseException) -> str:
    if hasattr(exc, "response"):
        return str(exc.response.get("Error", {}).get("Message", ""))  # type: ignore[attr-defined]
    return str(exc)


def translate(exc: BaseException, action: str, *, name: str | None = None) -> MldeployError:
    """One botocore/boto3 exception as the matching mldeploy error."""
    if isinstance(exc, MldeployError):
        return exc
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ConfigError(f"{action}: no AWS credentials found",
                           hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                "or run aws configure")
    if isinstance(exc, NoRegionError):
        return ConfigError(f"{action}: no AWS region given",
                           hint="use --target sagemaker:/REGION or -C region_name=REGION")
    if isinstance(exc, EndpointConnectionError):
        return TargetError(f"{action}: cannot reach AWS ({scrub(str(exc))})",
                           hint="check the network and any AWS_ENDPOINT_URL* variables")
    if isinstance(exc, ClientError):
        code, msg = _code(exc), scrub(_message(exc))
        if code in _ACCESS:
            return TargetError(f"{action}: access denied ({code}: {msg})",
                               hint="give the caller's IAM identity the permission named above")
        if name is not None and is_not_found(exc):
            return DeploymentNotFoundError(f"no SageMaker endpoint named {name!r}",
                                           hint="mldeploy list --target sagemaker shows them")
        if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
            return TargetError(f"{action}: AWS is throttling requests ({msg})",
                               hint="wait a minute and re-run the same command")
        if code == "ResourceLimitExceeded":
            return TargetError(f"{action}: {msg}",
                               hint="request a quota increase or use a smaller instance type")
        return TargetError(f"{action} failed: {code}: {msg}" if code else f"{action}: {msg}")
    if isinstance(exc, BotoCoreError):
        return TargetError(f"{action}: {scrub(str(exc))}")
    return TargetError(f"{action}: unexpected {type(exc).__name__}: {scrub(str(exc))}")


@contextlib.contextmanager
def aws_errors(action: str, *, name: str | None = None) -> Iterator[None]:
    """Translate SDK errors raised inside the block (``name``: a not-found is that endpoint's)."""
    from botocore.exceptions import BotoCoreError, ClientError

    with map_exceptions({(BotoCoreError, ClientError):
                         lambda exc: translate(exc, action, name=name)}):
        yield


def invocation_error(exc: BaseException, name: str) -> MldeployError:
    """A sagemaker-runtime error as InvocationError/PredictionError (or not-found)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = _code(exc)
        err = exc.response.get("Error", {})
        if code == "ModelError" or "OriginalStatusCode" in exc.response:
            status = int(exc.response.get("OriginalStatusCode") or 500)
            body = str(exc.response.get("OriginalMessage") or err.get("Message", ""))
            return container_error(
                name, status, body,
                request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
                hint="see the endpoint's CloudWatch log /aws/sagemaker/Endpoints/" + name)
        msg = _message(exc)
        if msg.startswith("Endpoint ") and "not found" in msg:
            return DeploymentNotFoundError(f"no SageMaker endpoint named {name!r}",
                                           hint="mldeploy list --target sagemaker shows them")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in ("ValidationError", "ValidationException") or 400 <= status < 500:
            if code not in _ACCESS:
                return InvocationError(f"invoke {name}: {scrub(msg, 300)}", status=status or 400,
                                       error_code=code, hint="check the request and --variant")
    return translate(exc, f"invoke {name}")


__all__ = ["UnmanagedEndpointError", "aws_errors", "invocation_error", "is_not_found", "scrub",
           "translate"]
