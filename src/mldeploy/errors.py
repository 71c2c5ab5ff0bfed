"""The mldeploy exception tree. Every error a caller can see is one of these; SDK exceptions
(boto3, docker, kubernetes, azure, mlflow) are translated inside the plugin that met them.

::

    MldeployError                       base: .message, .hint (what to do next), .exit_code
    ├── UsageError                      bad input from the caller (CLI exit code 2)
    │   ├── ConfigError                 unknown key, wrong type, value out of range
    │   └── ModelUriError               a model URI that does not resolve to an MLflow model
    │       ├── TrackingServerError     the tracking server / registry cannot be reached
    │       ├── ModelNotFoundError      no such run, model, version, alias or path
    │       └── NotAnMlflowModelError   the location exists but holds no MLmodel file
    ├── TargetError                     a deployment target failed
    │   ├── TargetNotFoundError         no target of that name (or its extra is not installed)
    │   ├── DeploymentNotFoundError
    │   ├── DeploymentExistsError
    │   ├── DeploymentFailedError       create/replace failed; .cleaned / .leftover list resources
    │   └── DeploymentTimeoutError
    ├── BuildError                      an image build or push failed
    └── InvocationError                 a deployed model answered with an error
        └── PredictionError             the model itself raised (a 5xx from the server)

Messages never carry credentials or stack traces; tracebacks go to the log.
"""

from __future__ import annotations


class MldeployError(Exception):
    """Base class. ``message`` says what went wrong, ``hint`` what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MldeployError):
    """The caller asked for something invalid; fixing the input fixes it."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key or value is invalid."""


class ModelUriError(UsageError):
    """A model URI could not be resolved to a local MLflow model directory."""


class TrackingServerError(ModelUriError):
    """The tracking server or model registry needed by the URI is unreachable."""


class ModelNotFoundError(ModelUriError):
    """The run, registered model, version, alias or path does not exist."""


class NotAnMlflowModelError(ModelUriError):
    """The location exists but is not an MLflow model (no MLmodel file)."""


class TargetError(MldeployError):
    """A deployment target could not do what was asked."""


class TargetNotFoundError(TargetError):
    """No target is registered under that name, or its optional extra is missing."""

    exit_code = 2


class DeploymentNotFoundError(TargetError):
    """The named deployment does not exist on the target."""


class DeploymentExistsError(TargetError):
    """``create`` was asked for a deployment that already exists."""

    exit_code = 2


class DeploymentFailedError(TargetError):
    """A create or replace failed. ``cleaned`` lists what was removed again, ``leftover`` what
    could not be removed (with ids, so the user can remove it by hand)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        cleaned: list[str] | None = None,
        leftover: list[str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.cleaned = list(cleaned or [])
        self.leftover = list(leftover or [])


class DeploymentTimeoutError(DeploymentFailedError):
    """The deployment did not become ready in time."""


class BuildError(MldeployError):
    """An image build or push failed."""


class InvocationError(MldeployError):
    """A deployed model answered with an error. ``status`` is the HTTP status, ``error_code`` the
    server's code and ``request_id`` the id to look for in the server log."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.error_code = error_code
        self.request_id = request_id


class PredictionError(InvocationError):
    """The model raised while predicting."""


__all__ = [
    "BuildError",
    "ConfigError",
    "DeploymentExistsError",
    "DeploymentFailedError",
    "DeploymentNotFoundError",
    "DeploymentTimeoutError",
    "InvocationError",
    "MldeployError",
    "ModelNotFoundError",
    "ModelUriError",
    "NotAnMlflowModelError",
    "PredictionError",
    "TargetError",
    "TargetNotFoundError",
    "TrackingServerError",
    "UsageError",
]
