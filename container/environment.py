"""The model's Python requirements against the environment that is about to load it.

:func:`check` reads the model's requirements with the image builder's reader
(:func:`mldeploy.container.image.requirements.read_model`: ``python_env.yaml``, else
``requirements.txt``, else ``conda.yaml``'s pip section) and looks each one up with
``importlib.metadata``: packages that are not installed are *missing* (the model cannot load:
the server stops with one line naming them and the fix), installed versions outside the
requirement's range are *mismatches* (one warning line; MLflow warns the same way).

``mlflow`` and ``mlflow-skinny`` satisfy each other (serving needs only the loaders, which both
carry); ``mldeploy`` is the runtime itself; requirements whose environment marker does not apply
here, and pip options (``--index-url``, ``-c``), are skipped.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

_log = logging.getLogger("mldeploy.container")
_MLFLOW = ("mlflow", "mlflow-skinny")


@dataclass(frozen=True)
class Mismatch:
    requirement: str  # as the model lists it
    installed: str  # the installed version


@dataclass(frozen=True)
class EnvironmentReport:
    """How the model's requirements compare with this environment."""

    source: str  # the file the requirements came from ("" when the model lists none)
    missing: tuple[str, ...]  # requirement lines whose package is not installed
    mismatched: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    def missing_line(self, model_dir: str | Path) -> str:
        """The one line a server prints when packages are missing."""
        names = ", ".join(self.missing)
        quoted = " ".join(f"'{r}'" for r in self.missing)
        return (
            f"the model's requirements ({self.source}) name package(s) not installed in this "
            f"environment: {names}. Install them (pip install {quoted}), or serve with "
            f"--env-manager virtualenv (MLDEPLOY_ENV_MANAGER=virtualenv) to build the model's "
            f"own environment from {Path(model_dir).name}/{self.source}"
        )

    def mismatch_line(self) -> str:
        items = ", ".join(f"{m.requirement} (installed {m.installed})" for m in self.mismatched)
        return (
            f"the model was saved with other package versions than this environment has: "
            f"{items}; serving anyway (--env-manager virtualenv serves it in its own "
            "environment)"
        )


def check(model_dir: str | Path) -> EnvironmentReport:
    """Compare the requirements of the model in ``model_dir`` with the installed packages.

    Raises :class:`mldeploy.errors.MldeployError` subclasses when the model's files cannot be
    read (no MLmodel, a requirements file that is unreadable or points outside the model).
    """
    from .image.requirements import read_model

    facts = read_model(Path(model_dir))
    missing: list[str] = []
    mismatched: list[Mismatch] = []
    for line in facts.requirement_lines:
        if line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            _log.warning("cannot parse the model's requirement %r: not checked", line)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name == "mldeploy":
            continue
        installed = _installed(name)
        if installed is None:
            missing.append(line)
            continue
        if req.specifier and not _satisfies(req, installed):
            mismatched.append(Mismatch(line, installed))
    return EnvironmentReport(facts.source, tuple(missing), tuple(mismatched))


def _installed(name: str) -> str | None:
    for candidate in (_MLFLOW if name in _MLFLOW else (name,)):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _satisfies(req: Requirement, installed: str) -> bool:
    try:
        return req.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return True  # a local build with a non-PEP 440 version: nothing to compare


def require(model_dir: str | Path) -> str | None:
    """Check the environment before a server loads the model: log one warning line for version
    mismatches; return the one error line when packages are missing (None: go ahead)."""
    from mldeploy.errors import MldeployError, NotAnMlflowModelError

    try:
        report = check(model_dir)
    except NotAnMlflowModelError as exc:
        return f"{exc.message}: {exc.hint}" if exc.hint else exc.message
    except MldeployError as exc:  # an unreadable requirements file: loading decides
        _log.warning("the model's requirements were not checked: %s", exc)
        return None
    if report.mismatched:
        _log.warning("%s", report.mismatch_line())
    if not report.ok:
        return report.missing_line(model_dir)
    return None


def prepare(settings: object) -> int | None:
    """What a server does before it starts (both engines): with ``env_manager`` ``local``,
    check the model's requirements here (None: go ahead; else the exit code, after one error
    line); with ``virtualenv`` / ``uv``, serve from the model's own environment and return that
    server's exit code."""
    from .runtime import LOAD_FAILED_EXIT_CODE

    if getattr(settings, "env_manager", "local") != "local":
        from .model_env import serve_in_model_env

        return serve_in_model_env(settings)  # type: ignore[arg-type]
    problem = require(getattr(settings, "model_uri"))  # noqa: B009
    if problem is not None:
        _log.error("%s", problem)
        return LOAD_FAILED_EXIT_CODE
    return None
