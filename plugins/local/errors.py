"""Docker SDK errors -> mldeploy errors, and the errors a local endpoint's answers become.

No docker exception leaves the plugin; messages carry the engine's explanation (never a
traceback) and say what to do next.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

from mldeploy.errors import (
    ConfigError,
    InvocationError,
    MldeployError,
    PredictionError,
    TargetError,
)

_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_SECRETS = re.compile(r"(?i)(password|secret|token|authorization)([=:]\s*)\S+")


def scrub(text: str, limit: int = 500) -> str:
    """Drop anything that looks like a secret and cap the length."""
    text = _SECRETS.sub(r"\1\2[redacted]", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def no_sdk() -> TargetError:
    return TargetError("the local target needs the docker SDK, which is not installed",
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
    try:
        yield
    except MldeployError:
        raise
    except ImportError:
        raise no_sdk() from None
    except Exception as exc:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        if isinstance(exc, (DockerException, RequestException, OSError)):
            if isinstance(exc, (RequestException, OSError)):
                raise TargetError(f"{action}: the Docker engine did not answer "
                                  f"({type(exc).__name__})",
                                  hint="check that dockerd runs; DOCKER_HOST names it") from None
            raise translate(exc, action) from None
        raise


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
    gateway's) as InvocationError / PredictionError, without any stack trace it may carry."""
    code = request_id = None
    message = body.decode("utf-8", "replace")
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            code = data.get("error_code")
            request_id = data.get("request_id")
            message = str(data.get("message") or message)
    except ValueError:
        pass
    message = scrub(message.split("Traceback (most recent call last)")[0], 400) or "no message"
    cls = PredictionError if status >= 500 and code in (None, "MODEL_ERROR") else InvocationError
    hint = {
        "UPSTREAM_UNAVAILABLE": "mldeploy get --target local shows whether its containers run",
        "MODEL_NOT_READY": "give a variant a weight (mldeploy traffic) or wait for it to load",
    }.get(code or "", "docker logs of the endpoint's container has the server's side"
          + (f" (request id {request_id})" if request_id else ""))
    return cls(f"{name!r} answered {status}{f' {code}' if code else ''}: {message}",
               status=status, error_code=code, request_id=request_id, hint=hint)


__all__ = ["docker_errors", "invocation_error", "log_tail", "no_sdk", "scrub", "translate"]
