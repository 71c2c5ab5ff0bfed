"""Docker SDK errors -> mldeploy errors, and the errors a local endpoint's answers become.

No docker exception leaves the plugin; messages carry the engine's explanation (never a
traceback) and say what to do next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from mldeploy.errors import (
    ConfigError,
    InvocationError,
    MissingExtraError,
    MldeployError,
    TargetError,
    map_exceptions,
)
from mldeploy.errors import invocation_error as container_error
from mldeploy.redact import redact

_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def scrub(text: object, limit: int = 500) -> str:
    """Text from the engine for a user: :func:`mldeploy.redact.redact` clipped to ``limit``."""
    return redact(text, limit)


def no_sdk() -> MissingExtraError:
    return MissingExtraError("the local target needs the docker SDK, which is not installed",
                             hint="pip install 'mldeploy[local]'")


def translate(exc: BaseException, action: str) -> MldeployError:
    if isinstance(exc, MldeployError):
        return exc
    from docker import errors as de

    if isinstance(exc, de.ImageNotFound):
        return ConfigError(f"{action}: image not found on the local Docker engine "
                           f"({scrub(exc.explanation or str(exc), 200)})",
                           hint="build or load the image first, or drop -C image to build one")
    if isinstance(exc, de.APIError):
        detail = scrub(exc.explanation or str(exc))
        if exc.status_code == 409:
            return TargetError(f"{action}: conflict on the Docker engine ({detail})",
                               hint="re-run; if it persists, mldeploy delete cleans up")
        return TargetError(f"{action}: the Docker engine answered {exc.status_code}: {detail}")
    if isinstance(exc, de.DockerException):
        return TargetError(f"{action}: no Docker engine answers ({type(exc).__name__})",
                           hint="start the Docker daemon or set DOCKER_HOST")
    return TargetError(f"{action}: unexpected {type(exc).__name__}: {scrub(str(exc))}")


@contextlib.contextmanager
def docker_errors(action: str) -> Iterator[None]:
    """Translate any docker SDK (or socket) error raised inside the block."""
    def silent(exc: BaseException) -> TargetError:
        return TargetError(f"{action}: the Docker engine did not answer ({type(exc).__name__})",
                           hint="check that dockerd runs; DOCKER_HOST names it")

    mapping: dict[type[BaseException] | tuple[type[BaseException], ...],
                  Callable[[BaseException], BaseException]] = {
        ImportError: lambda exc: no_sdk(), OSError: silent}
    try:
        from docker.errors import APIError, DockerException
        from requests.exceptions import RequestException
    except ImportError:
        pass
    else:  # an APIError is a requests HTTPError too: the engine did answer, so translate it
        mapping[(APIError, DockerException)] = lambda exc: translate(exc, action)
        mapping[RequestException] = silent
    with map_exceptions(mapping):
        yield


def log_tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of a container log worth showing: health-check access lines
    dropped and each Python traceback folded into its final exception line (frames and source
    lines are the indented lines under ``Traceback (most recent call last):``)."""
    out: list[str] = []
    in_tb = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or "GET /ping " in line or line.startswith(_CHAINED):
            continue
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if in_tb:
            if raw[:1].isspace():
                continue
            in_tb = False
            line = f"{line} (traceback folded)"
        out.append(line)
    return "\n".join(out[-lines:]) if lines > 0 else ""


def invocation_error(name: str, status: int, body: bytes) -> InvocationError:
    """An error answer of the endpoint ``name`` (the container protocol's JSON, or the
    gateway's) as the same InvocationError / PredictionError every target gives for it."""
    from mldeploy.container.errors import decode_error

    answer = decode_error(status, body)
    hint = {
        "UPSTREAM_UNAVAILABLE": "mldeploy get --target local shows whether its containers run",
        "MODEL_NOT_READY": "give a variant a weight (mldeploy traffic) or wait for it to load",
    }.get(answer.error_code or "", "docker logs of the endpoint's container has the server's side")
    return container_error(name, status, answer, hint=hint)


__all__ = ["docker_errors", "invocation_error", "log_tail", "no_sdk", "scrub", "translate"]
