"""Azure SDK errors -> mldeploy errors, in one place. No azure-core, azure-identity or azure-ai-ml
exception leaves the plugin; messages carry the service's code and message (redacted, never
tokens, keys or response internals) and say what to do next."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mldeploy.errors import (
    ConfigError,
    DeploymentExistsError,
    DeploymentNotFoundError,
    MldeployError,
    TargetError,
    map_exceptions,
)
from mldeploy.redact import redact


def scrub(text: object, limit: int = 600) -> str:
    return redact(text, limit)


def _service_message(exc: BaseException) -> tuple[int | None, str, str]:
    status = getattr(exc, "status_code", None)
    err = getattr(exc, "error", None)
    code = str(getattr(err, "code", "") or "")
    message = str(getattr(err, "message", "") or getattr(exc, "message", "") or exc)
    return status, code, scrub(message.splitlines()[0] if message else type(exc).__name__, 400)


def translate(exc: BaseException, action: str, *, name: str | None = None) -> MldeployError:
    """One SDK exception as the matching mldeploy error (``name``: a 404 is that endpoint's)."""
    from azure.core import exceptions as core

    if isinstance(exc, MldeployError):
        return exc
    if isinstance(exc, core.ClientAuthenticationError) or type(exc).__name__ in (
            "CredentialUnavailableError", "AuthenticationRequiredError"):
        return TargetError(
            f"{action}: no Azure credential was accepted ({_service_message(exc)[2]})",
            hint="sign in the Azure way: az login, a managed identity, or AZURE_CLIENT_ID/"
                 "AZURE_TENANT_ID/AZURE_CLIENT_SECRET (DefaultAzureCredential)")
    if isinstance(exc, core.ServiceRequestError):
        return TargetError(f"{action}: cannot reach Azure ({scrub(exc, 300)})",
                           hint="check the network, -C cloud=..., and REQUESTS_CA_BUNDLE for a "
                                "private cloud's certificate")
    if isinstance(exc, core.ResourceNotFoundError) and name is not None:
        return DeploymentNotFoundError(f"no Azure ML online endpoint named {name!r}",
                                       hint="mldeploy list --target azureml:/SUB/RG/WORKSPACE")
    if isinstance(exc, core.ResourceExistsError):
        return DeploymentExistsError(f"{action}: {_service_message(exc)[2]}",
                                     hint="use --mode replace, or delete it first")
    if isinstance(exc, core.HttpResponseError):
        status, code, message = _service_message(exc)
        what = f"{status} {code}".strip() if status else code or "an error"
        if status == 403:
            return TargetError(f"{action}: forbidden ({message})",
                               hint="ask for the AzureML Data Scientist role on the workspace")
        if status in (400, 422) or code in ("BadArgument", "UserError", "InvalidRequest"):
            return ConfigError(f"{action}: Azure ML refused the request: {message}",
                               hint="fix the config key behind the field named above")
        if status == 404:
            return TargetError(f"{action}: not found ({message})",
                               hint="check the subscription, resource group and workspace")
        if status is not None and (status == 429 or status >= 500):
            return TargetError(f"{action}: Azure ML answered {what} ({message})",
                               hint="wait a moment and re-run the same command")
        return TargetError(f"{action} failed: {what}: {message}")
    kind = type(exc).__name__
    if kind in ("ValidationException", "UserErrorException"):
        return ConfigError(f"{action}: {scrub(exc, 400)}",
                           hint="fix the config key behind the field named above")
    return TargetError(f"{action}: unexpected {kind}: {scrub(exc, 400)}")


@contextlib.contextmanager
def azure_errors(action: str, *, name: str | None = None) -> Iterator[None]:
    """Translate Azure SDK errors raised inside the block."""
    from azure.core.exceptions import AzureError

    try:
        from azure.ai.ml.exceptions import MlException
        types: tuple[type[BaseException], ...] = (AzureError, MlException)
    except ImportError:  # pragma: no cover - azure-ai-ml is the extra's
        types = (AzureError,)
    with map_exceptions({types: lambda exc: translate(exc, action, name=name)}):
        yield


__all__ = ["azure_errors", "scrub", "translate"]
