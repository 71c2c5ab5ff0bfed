"""Kubernetes API errors -> mldeploy errors. No client or urllib3 exception leaves the plugin;
messages carry the API server's reason and message (never response details, tokens or
tracebacks) and say what to do next."""

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
    """Text from the cluster for a user (messages, logs): :func:`mldeploy.redact.redact`
    clipped to ``limit``."""
    return redact(text, limit)


def strip_traceback(lines: list[str]) -> list[str]:
    """Log lines without Python stack frames: the ``Traceback`` header and the indented frame
    and source lines go, the exception's own last line stays."""
    return [ln for ln in lines
            if ln.strip() and not ln.startswith(("Traceback (most recent call last)", " ", "\t"))]


class ApiError(Exception):
    """An HTTP error answer of the API server: ``status``, its ``reason`` and ``message``."""

    def __init__(self, status: int, reason: str = "", message: str = "",
                 causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = scrub(message)
        self.causes = causes


class Unreachable(Exception):
    """No answer from the API server (connection refused, DNS, TLS, timeout)."""


def translate(exc: BaseException, action: str, *, name: str | None = None,
              kind: str = "deployment") -> MldeployError:
    """One API error as the matching mldeploy error."""
    if isinstance(exc, MldeployError):
        return exc
    if isinstance(exc, Unreachable):
        return TargetError(f"{action}: cannot reach the Kubernetes API server ({scrub(str(exc))})",
                           hint="check the cluster is running and the kubeconfig context "
                                "(kubectl cluster-info)")
    if not isinstance(exc, ApiError):
        return TargetError(f"{action}: unexpected {type(exc).__name__}: {scrub(str(exc))}")
    if exc.status == 401:
        return TargetError(f"{action}: the API server refused the credentials (401)",
                           hint="refresh them, e.g. log in again or check the kubeconfig user")
    if exc.status == 403:
        return TargetError(f"{action}: forbidden ({exc.message})",
                           hint="ask for RBAC permission on the resource named above")
    if exc.status == 404 and name is not None:
        return DeploymentNotFoundError(f"no {kind} named {name!r} in the cluster",
                                       hint="mldeploy list --target kubernetes shows them")
    if exc.status == 409:
        return DeploymentExistsError(f"{action}: {exc.message}",
                                     hint="use --mode replace, or delete the object first")
    if exc.status == 422:
        detail = "; ".join(exc.causes) or exc.message
        return ConfigError(f"{action}: the API server refused the object: {detail}",
                           hint="fix the config key behind the field named above")
    if exc.status == 429 or exc.status >= 500:
        return TargetError(f"{action}: the API server answered {exc.status} ({exc.message})",
                           hint="wait a moment and re-run the same command")
    return TargetError(f"{action} failed: {exc.status} {exc.reason}: {exc.message}")


@contextlib.contextmanager
def kube_errors(action: str, *, name: str | None = None,
                kind: str = "deployment") -> Iterator[None]:
    """Translate API errors raised inside the block (``name``: a 404 is that ``kind``'s)."""
    with map_exceptions({(ApiError, Unreachable):
                         lambda exc: translate(exc, action, name=name, kind=kind)}):
        yield


__all__ = ["ApiError", "Unreachable", "kube_errors", "scrub", "strip_traceback", "translate"]
