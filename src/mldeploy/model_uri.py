"""Model-URI resolution: whatever a user names a model by -> a local directory holding ``MLmodel``.

Forms: a local path or ``file:`` URI (used in place); ``runs:/<run_id>/<artifact_path>``;
``models:/<name>/<version|latest|stage>``, ``models:/<name>@<alias>`` (optionally ``/<path>``)
and ``models:/<model_id>``; any scheme MLflow has an artifact repository for (``s3://``,
``gs://``, ``wasbs://``, ``mlflow-artifacts:/``, ...), downloaded with
``mlflow.artifacts.download_artifacts``. Every failure is a ``ModelUriError`` (or subclass) with
a hint; SDK exceptions never escape and messages never carry URI credentials.

``resolve_model_uri`` returns the directory (a download is the caller's to remove);
``materialize`` lends it for a ``with`` block and removes a download when the block exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import unquote, urlparse

from mldeploy._model_uri_errors import (
    FORMS,
    MODELS_FORMS,
    Target,
    models_below,
    not_a_model,
    run_root_error,
    safe,
    translate,
)
from mldeploy.errors import (
    ModelNotFoundError,
    ModelUriError,
    NotAnMlflowModelError,
    TrackingServerError,
)

__all__ = ["materialize", "resolve_model_uri"]

_logger = logging.getLogger(__name__)

#: MLflow retries HTTP for minutes by default. Applied during a resolution unless already set.
_HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def resolve_model_uri(
    uri: str | os.PathLike[str],
    *,
    dst: str | Path | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> Path:
    """Return an absolute local directory holding the MLflow model named by ``uri``.

    Local paths and ``file:`` URIs are returned in place; anything else is downloaded into
    ``dst`` or, if None, a fresh temporary directory the caller owns. ``tracking_uri`` /
    ``registry_uri`` override ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``; with neither
    configured, ``runs:/`` and ``models:/`` URIs are refused (no implicit local store). During
    the call MLflow's HTTP retries are bounded (``_HTTP_BOUNDS``) and explicit store URIs are
    exported through environment variables, restored afterwards (other threads may see them).
    Raises ``ModelUriError`` or its subclasses, never an SDK exception.
    """
    found = _parse(uri, tracking_uri, registry_uri)
    return found if isinstance(found, Path) else _download(found, dst)


@contextmanager
def materialize(
    uri: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> Iterator[Path]:
    """Lend the local directory holding the model named by ``uri`` for the ``with`` block.

    A local path or ``file:`` URI is yielded in place and never modified or removed. Anything
    else is downloaded (as ``resolve_model_uri`` does) into a fresh temporary directory that is
    removed when the block exits, however it exits (return, exception, ``SystemExit``), and
    also when the download fails or a SIGTERM interrupts it (then ``SystemExit(143)``). Only the
    process that entered the block removes it: a forked child (a server worker) leaving the
    block leaves the directory to its parent. Raises what ``resolve_model_uri`` raises.
    """
    found = _parse(uri, tracking_uri, registry_uri)
    if isinstance(found, Path):
        yield found
        return
    owner, tmp = os.getpid(), _temp_dir()
    try:
        with _sigterm_exits():
            local = _download(found, tmp)
        yield local
    finally:
        if os.getpid() == owner:
            shutil.rmtree(tmp, ignore_errors=True)
            _logger.debug("removed the model download %s", tmp)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While downloading: SIGTERM raises ``SystemExit(143)`` (so the partial download is removed
    on the way out) instead of killing the process. Main thread only; the previous handler is
    restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _parse(uri, tracking_uri: str | None, registry_uri: str | None) -> Path | Target:
    """The model directory of a local ``uri``, else the checked remote ``Target``."""
    text = os.fspath(uri).strip() if isinstance(uri, (str, os.PathLike)) else ""
    if not text:
        raise ModelUriError("the model URI is empty", hint=FORMS)
    try:
        parsed = urlparse(text)
    except ValueError:
        raise ModelUriError(f"malformed model URI: {safe(text)}", hint=FORMS) from None
    scheme = parsed.scheme.lower()
    if len(scheme) <= 1:  # a plain path (or a Windows drive letter)
        return _local_model(Path(text).expanduser(), text)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ModelUriError(
                f"file URI {safe(text)} names host '{parsed.netloc}'",
                hint="use file:///absolute/path or a plain path; did you mean "
                f"file:///{parsed.netloc}{parsed.path}?",
            )
        return _local_model(Path(unquote(parsed.path or ".")), text)
    return _target(text, scheme, parsed, tracking_uri, registry_uri)


def _target(uri, scheme, parsed, tracking_uri, registry_uri) -> Target:
    """Check the shape of ``runs:/`` / ``models:/`` URIs and pick the store URIs."""
    parts = tuple(p for p in parsed.path.split("/") if p)
    if scheme in ("s3", "gs", "r2", "b2", "http", "https") and not parsed.netloc:
        raise ModelUriError(f"{safe(uri)} names no bucket or host", hint=FORMS)
    if scheme in ("http", "https") and "/mlflow-artifacts/artifacts" not in parsed.path:
        raise ModelUriError(
            f"{safe(uri)} is not a URL of an MLflow server's artifact API",
            hint="use mlflow-artifacts://<host>/<path> (or a .../api/2.0/mlflow-artifacts/"
            "artifacts/... URL), or download the model and pass its local path",
        )
    if scheme not in ("runs", "models") or parsed.netloc:  # incl. Databricks profile URIs
        return Target(uri, scheme, parts, tracking_uri, registry_uri)
    if scheme == "runs" and not parts:
        raise ModelUriError(f"{safe(uri)} names no run", hint="use runs:/<run_id>/<artifact_path>")
    if scheme == "models":
        name, at, alias = parts[0].partition("@") if parts else ("", "", "")
        if not name or (at and not alias):
            what = "an empty alias" if name else "no model name"
            raise ModelUriError(f"{safe(uri)} has {what}", hint=MODELS_FORMS)
    import mlflow

    registry = registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    configured = tracking_uri or mlflow.is_tracking_uri_set()
    if not (configured or (scheme == "models" and registry)):
        raise TrackingServerError(
            f"{safe(uri)} is looked up on an MLflow tracking server, and none is configured",
            hint="set MLFLOW_TRACKING_URI (e.g. http://mlflow.internal:5000 or "
            "sqlite:////path/mlflow.db) or pass a tracking URI",
        )
    return Target(uri, scheme, parts, tracking_uri, registry)


def _temp_dir() -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix="mldeploy-model-"))
    except OSError as exc:
        message = f"cannot create a temporary directory: {exc.strerror}"
        raise ModelUriError(message, hint="free space in TMPDIR, or pass dst") from None


def _download(t: Target, dst: str | Path | None) -> Path:
    """Download ``t`` into ``dst`` (None: a fresh temporary directory, removed on failure).
    On failure only what this call fetched is removed from a given ``dst``."""
    from mlflow.artifacts import download_artifacts

    owned, local = dst is None, None
    out = _temp_dir() if owned else Path(dst)
    with _scoped_env(t):
        try:
            if t.scheme == "runs" and len(t.parts) == 1:
                raise run_root_error(t)
            _refuse_non_model(t)
            out.mkdir(parents=True, exist_ok=True)
            local = Path(
                download_artifacts(
                    t.uri, dst_path=str(out), tracking_uri=t.tracking, registry_uri=t.registry
                )
            )
            return _model_dir(local, t.uri)
        except BaseException as exc:  # clean up on anything, incl. Ctrl-C mid-download
            if owned:
                shutil.rmtree(out, ignore_errors=True)
            elif local is not None and local.resolve() != out.resolve():  # only what we fetched
                with suppress(OSError):
                    shutil.rmtree(local) if local.is_dir() else local.unlink()
            if isinstance(exc, ModelUriError) or not isinstance(exc, Exception):
                raise
            _logger.debug("resolving %s failed", safe(t.uri), exc_info=True)
            error = translate(exc, t)  # SDK exceptions must not escape
    raise error


@contextmanager
def _scoped_env(t: Target) -> Iterator[None]:
    """Bound MLflow's HTTP retries (unless set) and export explicit store URIs (MLflow's
    ``models:/`` repository ignores the URIs passed to it); restore everything on exit."""
    values = {k: v for k, v in _HTTP_BOUNDS.items() if k not in os.environ}
    stores = {"MLFLOW_TRACKING_URI": t.tracking, "MLFLOW_REGISTRY_URI": t.registry}
    values.update({k: v for k, v in stores.items() if v})
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for key in (k for k, v in saved.items() if v is None):
            os.environ.pop(key, None)


def _local_model(path: Path, uri: str) -> Path:
    if not path.exists():
        message = f"no such file or directory: {safe(str(path))}"
        raise ModelNotFoundError(message, hint=f"check the path, or {FORMS}")
    if path.is_file() and path.name == "MLmodel":
        path = path.parent
    return _model_dir(path.resolve(), uri)


def _model_dir(path: Path, uri: str) -> Path:
    """Return ``path`` if it holds an MLmodel file, else raise NotAnMlflowModelError."""
    if path.is_file():
        parent = uri.rstrip("/").rpartition("/")[0]
        hint = "point at the directory that holds the MLmodel file"
        if path.name == "MLmodel" and parent:
            hint = f"point at the directory instead: {safe(parent)}"
        message = f"{safe(uri)} is a file, not an MLflow model directory"
        raise NotAnMlflowModelError(message, hint=hint)
    try:
        if (path / "MLmodel").is_file():
            return path.resolve()
        found = models_below(lambda rel: [(p.name, p.is_dir()) for p in (path / rel).iterdir()], 2)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ModelUriError(
            f"cannot read {safe(uri)}: {reason}", hint="check permissions"
        ) from None
    raise not_a_model(uri, found)


def _refuse_non_model(t: Target) -> None:
    """Refuse a remote directory without a top-level MLmodel before downloading it (pointing at
    a bucket root must not download the bucket)."""
    from mlflow.artifacts import list_artifacts

    base = t.uri.rstrip("/")

    def listdir(rel: str) -> list[tuple[str, bool]]:
        listing = list_artifacts(f"{base}/{rel}" if rel else base)
        return [(f.path.rpartition("/")[2], f.is_dir) for f in listing]

    top = listdir("")
    if top and ("MLmodel", False) not in top:
        raise not_a_model(t.uri, models_below(listdir, 2, top))
