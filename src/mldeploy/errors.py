"""The mldeploy exception tree. Every error a caller can see is one of these; SDK exceptions
(boto3, docker, kubernetes, azure, mlflow) are translated inside the plugin that met them.

::

    MldeployError                       base: .message, .hint (what to do next), .exit_code
    ├── UsageError                      bad input from the caller (CLI exit code 2)
    │   ├── ConfigError                 unknown key, wrong type, value out of range
    │   ├── MissingExtraError           an optional dependency is not installed (pip install)
    │   ├── PortInUseError              a port to listen on is taken by another process
    │   └── ModelUriError               a model URI that does not resolve to an MLflow model
    │       ├── TrackingServerError     the tracking server / registry cannot be reached
    │       ├── ModelNotFoundError      no such run, model, version, alias or path
    │       └── NotAnMlflowModelError   the location exists but holds no MLmodel file
    ├── TargetError                     a deployment target failed
    │   ├── TargetNotFoundError         no target of that name (or its extra is not installed): 2
    │   ├── DeploymentNotFoundError     no deployment of that name: 2
    │   ├── DeploymentExistsError       2
    │   ├── DeploymentFailedError       create/replace failed; .cleaned / .leftover list resources
    │   └── DeploymentTimeoutError
    ├── BuildError                      an image build or push failed
    └── InvocationError                 a deployed model answered with an error (4xx: 2, else 1)
        └── PredictionError             the model itself raised or timed out (a 5xx)

Messages never carry credentials or stack traces; tracebacks go to the log. :data:`EXIT_CODES`
is the CLI's one exit-code table (the README prints it); every verb and target follows it
because the code comes from the error's class.

SDK exceptions become these through :func:`map_exceptions` (the plugins' ``errors`` modules use
it); an error answer of the serving container becomes one through :func:`invocation_error` (the
same class for the same answer on every target).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mldeploy.container.errors import ErrorAnswer

# The CLI's exit codes: code -> when.
EXIT_CODES = {
    0: "success",
    1: "the operation failed: a deployment, build, push or cloud call failed or timed out, the "
       "model answered a 5xx, or an internal error",
    2: "bad input: an invalid option, config key, model URI or target; a deployment that does "
       "not exist, already exists or is not mldeploy's; an invoke request the model refused "
       "(4xx); a port already in use; an optional extra not installed",
    3: "serve: the model failed to load or to score its serving example",
    130: "interrupted (Ctrl-C)",
}


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


class MissingExtraError(UsageError):
    """An optional dependency (an extra of mldeploy) is not installed; ``hint`` says what to
    ``pip install``."""


class PortInUseError(UsageError):
    """A port mldeploy must listen on is taken by another process."""


class TargetError(MldeployError):
    """A deployment target could not do what was asked."""


class TargetNotFoundError(TargetError):
    """No target is registered under that name, or its optional extra is missing."""

    exit_code = 2


class DeploymentNotFoundError(TargetError):
    """The named deployment does not exist on the target."""

    exit_code = 2


class DeploymentExistsError(TargetError):
    """``create`` was asked for a deployment that already exists."""

    exit_code = 2


class DeploymentFailedError(TargetError):
    """A create or replace failed. ``cleaned`` lists what was removed again, ``leftover`` what
    could not be removed (with ids, so the user can remove it by hand); ``cause`` is the
    mldeploy error that made it fail, when there was one: a deployment that failed on bad input
    (a port in use, a missing extra) exits with the input's code, 2, like the same error met
    before anything was made."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        cleaned: list[str] | None = None,
        leftover: list[str] | None = None,
        cause: MldeployError | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.cleaned = list(cleaned or [])
        self.leftover = list(leftover or [])
        self.cause = cause

    @property  # type: ignore[override]
    def exit_code(self) -> int:
        return self.cause.exit_code if isinstance(self.cause, UsageError) else 1


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

    @property  # type: ignore[override]
    def exit_code(self) -> int:  # a request the model refused is the caller's input
        return 2 if self.status is not None and 400 <= self.status < 500 else 1


class PredictionError(InvocationError):
    """The model raised while predicting, or ran past the server's timeout."""


def invocation_error(name: str, status: int, body: bytes | str | ErrorAnswer | None, *,
                     hint: str | None = None, request_id: str | None = None) -> InvocationError:
    """The error answer ``body`` (with HTTP ``status``) of deployment ``name``'s serving container
    as the one mldeploy error for it on every target: :class:`PredictionError` when the model
    failed (``MODEL_ERROR``, ``REQUEST_TIMEOUT``, or a 5xx without the container's code), else
    :class:`InvocationError`. ``hint`` says where the target keeps the server's log;
    ``request_id`` is a fallback for an answer that carries none (e.g. the cloud's id)."""
    from mldeploy.container.errors import ErrorAnswer, decode_error
    from mldeploy.redact import redact

    answer = body if isinstance(body, ErrorAnswer) else decode_error(status, body)
    rid = answer.request_id or request_id
    cls = PredictionError if answer.model_fault else InvocationError
    code = f" {answer.error_code}" if answer.error_code else ""
    if hint and rid:
        hint = f"{hint} (request id {rid})"
    return cls(f"the model on {name!r} answered {answer.status}{code}: "
               f"{redact(answer.message, 400)}", status=answer.status,
               error_code=answer.error_code, request_id=rid, hint=hint)


@contextlib.contextmanager
def map_exceptions(
    mapping: Mapping[type[BaseException] | tuple[type[BaseException], ...],
                     Callable[[BaseException], BaseException]],
) -> Iterator[None]:
    """Translate exceptions raised inside the block, as httpx's ``map_exceptions`` does:
    ``mapping`` maps exception types (or tuples of them) to a callable building the mldeploy
    error from the exception (or an :class:`MldeployError` class: it gets the exception's
    redacted text as its message). The most specific
    matching type wins; an :class:`MldeployError` and anything unmapped pass through unchanged;
    the SDK's exception is not chained (its traceback is not the caller's business)."""
    try:
        yield
    except MldeployError:
        raise
    except Exception as exc:
        best: tuple[int, Callable[[BaseException], BaseException]] | None = None
        mro = type(exc).__mro__
        for types, build in mapping.items():
            for tp in types if isinstance(types, tuple) else (types,):
                if isinstance(exc, tp):
                    rank = mro.index(tp) if tp in mro else len(mro)
                    if best is None or rank < best[0]:
                        best = (rank, build)
        if best is None:
            raise
        build = best[1]
        if isinstance(build, type) and issubclass(build, MldeployError):
            from mldeploy.redact import redact

            raise build(redact(exc, 500) or type(exc).__name__) from None
        raise build(exc) from None


__all__ = [
    "BuildError",
    "ConfigError",
    "DeploymentExistsError",
    "DeploymentFailedError",
    "DeploymentNotFoundError",
    "DeploymentTimeoutError",
    "EXIT_CODES",
    "InvocationError",
    "MissingExtraError",
    "MldeployError",
    "ModelNotFoundError",
    "ModelUriError",
    "NotAnMlflowModelError",
    "PortInUseError",
    "PredictionError",
    "TargetError",
    "TargetNotFoundError",
    "TrackingServerError",
    "UsageError",
    "invocation_error",
    "map_exceptions",
]
