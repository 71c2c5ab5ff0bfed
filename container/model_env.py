"""``--env-manager virtualenv|uv``: serve the model from its own Python environment.

The environment is built once and cached under ``<cache>/envs/<hash>`` (``<cache>`` is
``$MLDEPLOY_CACHE_DIR``, else ``$XDG_CACHE_HOME/mldeploy``, else ``~/.cache/mldeploy``), keyed by
a hash of everything that goes into it: the model's requirements as the image builder resolves
them (:func:`mldeploy.container.image.requirements.resolve`: ``mlflow`` becomes
``mlflow-skinny``, mldeploy's own runtime requirements are added), this Python's version, the
manager, and mldeploy itself. mldeploy goes in as it is installed here: an editable install
stays editable (``pip install -e`` of the same source tree), otherwise its wheel (built from the
source tree or downloaded, as for images). ``virtualenv`` uses ``python -m venv`` and pip,
``uv`` uses ``uv venv`` and ``uv pip`` (much faster; ``uv`` must be on ``PATH`` or installed in
this environment). Environments are built with this interpreter's Python (the model's own
``python_version``, when it differs, is a warning line).

The server then runs as ``<env>/bin/python -m mldeploy.container serve`` with the same settings
(passed as their environment variables) and ``MLDEPLOY_ENV_MANAGER=local``, so the model's
requirements are checked again inside, and this process forwards stop signals to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mldeploy.errors import MldeployError

from .settings import ENV_NAMES, ServerSettings

_log = logging.getLogger("mldeploy.container")
READY_MARKER = ".mldeploy-env-ready"
BUILD_TIMEOUT = 1800


class EnvBuildError(MldeployError):
    """The model's environment could not be built."""


def runtime_install_args(cache_dir: Path) -> tuple[list[str], str]:
    """pip arguments that install mldeploy into another environment as it is installed here,
    and a string identifying that (part of the cache key)."""
    direct: dict[str, Any] = {}
    for dist in importlib.metadata.distributions(name="mldeploy"):  # a source tree's stale
        text = dist.read_text("direct_url.json")                    # egg-info has none
        if text:
            direct = json.loads(text)
            break
    url = str(direct.get("url") or "")
    if url.startswith("file://") and (direct.get("dir_info") or {}).get("editable"):
        path = url[len("file://"):]
        return ["-e", path], f"editable:{path}"
    from .image.wheelhouse import mldeploy_wheel

    wheel = mldeploy_wheel(cache_dir)
    return [str(wheel)], f"wheel:{wheel.name}:{_file_digest(wheel)}"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class EnvPlan:
    """What goes into the model's environment."""

    manager: str  # virtualenv | uv
    requirements: tuple[str, ...]
    runtime: tuple[str, ...]  # pip arguments installing mldeploy
    runtime_id: str
    python: str  # "3.11"

    @property
    def key(self) -> str:
        blob = json.dumps([self.manager, self.requirements, self.runtime_id, self.python,
                           sys.implementation.name])
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def plan(model_dir: Path, manager: str, engine: str, cache_dir: Path) -> EnvPlan:
    from .image.requirements import read_model, resolve

    facts = read_model(model_dir)
    resolved = resolve(facts, engine=engine, env_manager="virtualenv")
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    saved = facts.python_version or ""
    if saved and ".".join(saved.split(".")[:2]) != ours:
        _log.warning("the model was saved with Python %s; its environment is built with this "
                     "Python, %s", saved, ours)
    runtime, runtime_id = runtime_install_args(cache_dir)
    return EnvPlan(manager, tuple(resolved.lines), tuple(runtime), runtime_id, ours)


def ensure_env(plan_: EnvPlan, cache_dir: Path) -> Path:
    """The environment for ``plan_``: reused when built before, else built now (one builder
    at a time per environment; a failed build leaves nothing behind)."""
    root = cache_dir / "envs"
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / plan_.key
    with open(root / f"{plan_.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (env_dir / READY_MARKER).is_file():
            _log.info("serving from the model's environment %s (cached)", env_dir)
            return env_dir
        shutil.rmtree(env_dir, ignore_errors=True)  # a build that was interrupted
        started = time.monotonic()
        _log.info("building the model's environment in %s (%s, once)", env_dir, plan_.manager)
        try:
            _build(plan_, env_dir)
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        (env_dir / READY_MARKER).write_text(json.dumps(dataclasses.asdict(plan_), indent=1))
        _log.info("built the model's environment in %.1f s", time.monotonic() - started)
        return env_dir


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        with contextlib.suppress(ImportError):
            from uv import find_uv_bin  # the uv package from PyPI ships the binary

            found = find_uv_bin()
    if found is None:
        raise EnvBuildError("--env-manager uv needs uv, which is not installed",
                            hint="pip install uv, or use --env-manager virtualenv")
    return found


def _build(plan_: EnvPlan, env_dir: Path) -> None:
    python = env_dir / "bin" / "python"
    requirements = env_dir.parent / f"{plan_.key}.requirements.txt"
    requirements.write_text("\n".join(plan_.requirements) + "\n")
    try:
        if plan_.manager == "uv":
            uv = _uv()
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], "uv venv")
            install = [uv, "pip", "install", "--quiet", "--python", str(python)]
        else:
            _run([sys.executable, "-m", "venv", str(env_dir)], "python -m venv")
            install = [str(python), "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check"]
        _run([*install, "-r", str(requirements)], "installing the model's requirements")
        _run([*install, "--no-deps", *plan_.runtime], "installing mldeploy")
    finally:
        requirements.unlink(missing_ok=True)


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EnvBuildError(f"{what} did not finish in {BUILD_TIMEOUT} s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line]
        raise EnvBuildError(
            f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}",
            hint="fix the model's requirements, or serve with --env-manager local",
        )


def settings_environment(settings: ServerSettings) -> dict[str, str]:
    """``settings`` as the environment variables the container entry point reads."""
    out = {}
    for name, env_name in ENV_NAMES.items():
        out[env_name] = str(getattr(settings, name))
    out[ENV_NAMES["env_manager"]] = "local"
    return out


def serve_in_model_env(settings: ServerSettings) -> int:
    """Build (or reuse) the model's environment and run the server there until it exits."""
    from .image.options import default_cache_dir
    from .runtime import LOAD_FAILED_EXIT_CODE

    cache_dir = default_cache_dir()
    try:
        env_dir = ensure_env(
            plan(Path(settings.model_uri), settings.env_manager, settings.engine, cache_dir),
            cache_dir,
        )
    except MldeployError as exc:
        _log.error("cannot build the model's environment: %s", exc)
        return 2 if "needs uv" in exc.message else LOAD_FAILED_EXIT_CODE
    env = {**os.environ, **settings_environment(settings)}
    env.pop("PYTHONPATH", None)  # the model's environment, not this one's
    env.pop("PYTHONHOME", None)
    proc = subprocess.Popen([str(env_dir / "bin" / "python"), "-m", "mldeploy.container",
                             "serve"], env=env)
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

    def _forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, _forward) for sig in forwarded}
    try:
        while True:
            try:
                return proc.wait()
            except InterruptedError:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
