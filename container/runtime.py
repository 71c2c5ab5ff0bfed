"""Engine-agnostic server state: background model load + warm-up, readiness, request ids, the
per-request deadline. One :class:`ModelRuntime` per worker process.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from . import protocol
from .loader import ServedModel, load_failure_hint, load_model
from .protocol import ProtocolError, Reply
from .settings import ServerSettings

_log = logging.getLogger("mldeploy.container")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")

# Exit code that makes the gunicorn master stop instead of respawning the worker.
LOAD_FAILED_EXIT_CODE = 3


def request_id(given: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token, else a fresh one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def printable(text: str) -> str:
    """``text`` safe for one log line: control characters (CR, LF, ESC, ...) and backslashes
    escaped (``\\n``, ``\\x1b``), so a request path or header cannot forge or split log lines."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


class PredictionTimeout(ProtocolError):
    """``REQUEST_TIMEOUT``; ``still_running`` when the prediction's thread is still busy (Python
    cannot stop a thread: the engine retires the worker process so it stops burning CPU)."""

    def __init__(self, message: str, still_running: bool) -> None:
        super().__init__("REQUEST_TIMEOUT", message)
        self.still_running = still_running


class ModelRuntime:
    """Loads the model in a background thread so the server answers ``/ping`` (503) at once.

    ``ready`` is set only after the model loaded and, when it ships a serving example, one
    warm-up prediction passed. A load or warm-up failure calls ``on_failure`` (by default: log
    and exit the process with :data:`LOAD_FAILED_EXIT_CODE`, which stops the whole server).
    With ``preloaded`` (a model the parent process loaded before forking this worker) only the
    warm-up runs here.
    """

    def __init__(
        self, settings: ServerSettings, on_failure: Any = None,
        preloaded: ServedModel | None = None,
    ) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.model: ServedModel | None = None
        self._preloaded = preloaded
        self.failure: str | None = None
        self._on_failure = on_failure or _exit_on_failure
        self._pool = ThreadPoolExecutor(
            max_workers=settings.threads, thread_name_prefix="mldeploy-predict"
        )

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="mldeploy-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        started = time.monotonic()
        try:
            model = self._preloaded or load_model(self.settings.model_uri)
            warmed = warm_up(model)
        except BaseException as exc:  # noqa: BLE001 - any failure stops the server, logged
            self.failure = f"{type(exc).__name__}: {exc}"
            _log.exception("model %s failed to load", self.settings.model_uri)
            hint = load_failure_hint(exc)
            if hint:
                _log.error("%s", hint)
            self._on_failure(self)
            return
        # Move everything alive now (MLflow, pandas, the model) out of the collector's reach:
        # a request's parse allocates ~10^5 objects, and each full collection would otherwise
        # walk the whole startup heap (tail latency).
        gc.collect()
        gc.freeze()
        self.model = model
        self.ready.set()
        _log.info(
            "model %s %s in %.2f s%s (pid %d)",
            self.settings.model_uri,
            "ready (loaded before fork)" if self._preloaded else "loaded",
            time.monotonic() - started,
            ", warm-up passed" if warmed else "",
            os.getpid(),
        )

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None) -> Reply:
        """Score one request within the configured timeout, answering in the format ``accept``
        asks for (JSON by default). Raises :class:`ProtocolError`."""
        deadline = time.monotonic() + self.settings.timeout
        if not self.ready.wait(self.settings.timeout):
            raise ProtocolError("MODEL_NOT_READY", "the model is still loading: retry shortly")
        model = self.model
        assert model is not None
        future = self._pool.submit(
            protocol.handle_invocation, body, content_type, model, accept
        )
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            # cancel() fails when the prediction already runs: its thread keeps going.
            still_running = not future.cancel() and not future.done()
            raise PredictionTimeout(
                f"the model did not answer within {self.settings.timeout:g} s "
                "(SAGEMAKER_MODEL_SERVER_TIMEOUT sets the limit)",
                still_running=still_running,
            ) from None

    def version(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as pkg_version

        def _v(name: str) -> str | None:
            try:
                return pkg_version(name)
            except PackageNotFoundError:
                return None

        import mldeploy

        return {
            "mldeploy": mldeploy.__version__,
            "mlflow": _v("mlflow") or _v("mlflow-skinny"),
            "engine": self.settings.engine,
            "model": self.model.info if self.model else None,
            "ready": self.ready.is_set(),
        }

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def warm_up(model: ServedModel) -> bool:
    """Run one prediction through the full protocol on the model's serving example.

    Returns False when the model has no example. Raises when the prediction fails, so a model
    that cannot answer its own example never reports ready.
    """
    body = model.serving_example()
    if body is None:
        return False
    protocol.handle_invocation(body, protocol.JSON_TYPE, model)
    return True


def _exit_on_failure(runtime: ModelRuntime) -> None:
    logging.shutdown()
    os._exit(LOAD_FAILED_EXIT_CODE)
