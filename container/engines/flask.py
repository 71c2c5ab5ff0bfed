"""The ``flask`` engine: a Flask app over :mod:`mldeploy.container.protocol`, run by gunicorn's
master with mldeploy's worker (:mod:`._worker`): an asyncio front that reads each request whole,
under deadlines (:mod:`._transport`), then runs the app in a thread (a pinging load balancer is
answered while predictions run and while slow clients send).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import orjson
from flask import Flask, Response, request

from .. import environment, metrics
from ..loader import ServedModel, fork_safe, load_failure_hint, load_model
from ..protocol import STATUS, ProtocolError, Reply, error_body
from ..runtime import LOAD_FAILED_EXIT_CODE, ModelRuntime, PredictionTimeout, printable, request_id
from ..settings import ServerSettings
from ._transport import DRAIN_LIMIT, too_large_message

_log = logging.getLogger("mldeploy.container")
_CHUNK = 1024 * 1024


def create_app(
    settings: ServerSettings, runtime: ModelRuntime | None = None,
    preloaded: ServedModel | None = None,
) -> Flask:
    """Build the app and start loading the model (or warming up ``preloaded``) in the
    background."""
    if runtime is None:
        runtime = ModelRuntime(settings, preloaded=preloaded)
        runtime.start()
    app = Flask("mldeploy")
    app.config["MLDEPLOY_RUNTIME"] = runtime
    limit = settings.max_request_bytes

    @app.before_request
    def _start() -> None:
        request.environ["mldeploy.start"] = time.perf_counter()
        request.environ["mldeploy.request_id"] = request_id(request.headers.get("X-Request-Id"))

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = request.environ.get("mldeploy.request_id") or request_id(None)
        response.headers["X-Request-Id"] = rid
        started = request.environ.get("mldeploy.start")
        ms = (time.perf_counter() - started) * 1000 if started else -1.0
        if request.path not in ("/ping", "/health") or response.status_code != 200:
            _log.info(
                "%s %s %d %.1fms rid=%s", printable(request.method), printable(request.path),
                response.status_code, ms, rid,
            )
        return response

    @app.get("/ping")
    @app.get("/health")
    def ping() -> Response:
        if runtime.ready.is_set():
            return Response(b"", 200)
        return _error("MODEL_NOT_READY", "the model is loading")

    @app.get("/version")
    def version() -> Response:
        return Response(orjson.dumps(runtime.version()), 200, content_type="application/json")

    @app.post("/invocations")
    def invocations() -> Response:
        environ = request.environ
        length = request.content_length
        if length is not None and length > limit:
            return _too_large(environ, length, limit)
        body = _read_body(environ, length, limit)
        if body is None:
            return _too_large(environ, None, limit)
        try:
            reply = runtime.invoke(
                body, request.headers.get("Content-Type"), request.headers.get("Accept")
            )
        except ProtocolError as err:
            if err.error_code in ("MODEL_ERROR", "INTERNAL_ERROR", "REQUEST_TIMEOUT"):
                _log.error(
                    "rid=%s %s: %s", environ["mldeploy.request_id"], err.error_code, err.message,
                    exc_info=err.__cause__ is not None and err.error_code != "REQUEST_TIMEOUT",
                )
            if isinstance(err, PredictionTimeout) and err.still_running:
                # Its thread keeps burning CPU: replace this worker (after the requests in flight).
                retire = environ.get("mldeploy.retire_worker")
                if retire is not None:
                    retire(f"a prediction ran over the {settings.timeout:g} s timeout")
            return _error(err.error_code, err.message)
        return _reply(reply)

    @app.errorhandler(404)
    def not_found(_: Any) -> Response:
        return _error(
            "NOT_FOUND", f"no route {request.path}: use POST /invocations, GET /ping, /version"
        )

    @app.errorhandler(405)
    def not_allowed(_: Any) -> Response:
        return _error("METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.path}")

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        _log.exception("rid=%s unhandled error", request.environ.get("mldeploy.request_id"))
        return _error("INTERNAL_ERROR", "internal server error; the server log has the details")

    # -- metrics hook: counts and times every request, answers GET /metrics (mldeploy.metrics)
    if settings.metrics == "on":
        app.wsgi_app = metrics.instrument_wsgi(app.wsgi_app, settings, runtime)  # type: ignore
    # -- end of metrics hook
    return app


def _read_body(environ: dict[str, Any], length: int | None, limit: int) -> bytes | None:
    """The body, or None when a body of unknown length (chunked) runs over ``limit``."""
    stream = environ["wsgi.input"]
    if length is not None:
        return stream.read(length) if length else b""
    data = stream.read(limit + 1)
    return None if len(data) > limit else data


def _too_large(environ: dict[str, Any], length: int | None, limit: int) -> Response:
    response = _error("REQUEST_TOO_LARGE", too_large_message(length, limit))
    stream = environ["wsgi.input"]
    drained, remaining = 0, DRAIN_LIMIT
    if length is None or length <= DRAIN_LIMIT:
        while remaining > 0 and (chunk := stream.read(min(_CHUNK, remaining))):
            drained += len(chunk)
            remaining -= len(chunk)
    if length is None and remaining <= 0 or length is not None and length > DRAIN_LIMIT:
        response.headers["Connection"] = "close"
    return response


def _reply(reply: Reply) -> Response:
    return Response(reply.body, reply.status, content_type=reply.content_type)


def _error(error_code: str, message: str) -> Response:
    rid = request.environ.get("mldeploy.request_id")
    return Response(
        error_body(error_code, message, rid), STATUS[error_code], content_type="application/json"
    )


def gunicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """gunicorn settings for ``settings``: mldeploy's worker (timeouts, connection cap, drain:
    :mod:`._worker`), no access log (the app logs each request with its id), no control socket
    (read-only filesystems)."""
    from ._worker import worker_class

    options: dict[str, Any] = {
        "bind": f"[{settings.host}]:{settings.port}" if ":" in settings.host
        else f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": worker_class(settings),
        "threads": settings.threads,
        "timeout": 120,  # worker heartbeat; requests are bounded by settings.timeout
        "graceful_timeout": max(1, math.ceil(settings.graceful_timeout)),
        "backlog": 2048,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level,
        "control_socket_disable": True,
        "proc_name": "mldeploy-serve",
    }
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def should_preload(settings: ServerSettings) -> bool:
    """Whether the master loads the model before forking the workers (``settings.preload``)."""
    if settings.preload == "auto":
        return fork_safe(settings.model_uri)
    return settings.preload == "on"


class _StopLoading(BaseException):
    """SIGTERM/SIGINT/SIGQUIT arrived while the master was loading the model."""


def preload_model(settings: ServerSettings, listeners: Sequence[Any]) -> ServedModel:
    """Load the model in the gunicorn master after it bound ``listeners`` and before it forks
    the workers, while a forked child answers 503 on them (:mod:`._loading`).

    Workers forked afterwards start with the model in memory (shared copy-on-write; ``gc.freeze``
    keeps the collector from touching, and so copying, those pages). They only run the warm-up,
    so a worker that crashes is back at once too. A load failure is logged and exits the server
    with :data:`LOAD_FAILED_EXIT_CODE`; a stop signal during the load exits with 0.
    """
    from ._loading import LoadingResponder

    def _stop(signum: int, _frame: Any) -> None:
        raise _StopLoading(signum)

    started = time.monotonic()
    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    previous = {sig: signal.signal(sig, _stop) for sig in stop_signals}
    try:
        with LoadingResponder(list(listeners)):
            model = load_model(settings.model_uri)
    except _StopLoading:
        _log.info("stopped while loading the model")
        raise SystemExit(0) from None
    except Exception as exc:
        _log.exception("model %s failed to load", settings.model_uri)
        hint = load_failure_hint(exc)
        if hint:
            _log.error("%s", hint)
        raise SystemExit(LOAD_FAILED_EXIT_CODE) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    gc.collect()
    gc.freeze()
    _log.info("model %s loaded in %.2f s; starting %d worker(s)",
              settings.model_uri, time.monotonic() - started, settings.workers)
    return model


def run(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    from gunicorn.app.base import BaseApplication

    from . import _gunicorn

    if not _gunicorn.is_supported():
        _log.warning("gunicorn %d.%d is not a version mldeploy was tested with (%s)",
                     *_gunicorn.version(), _gunicorn.SUPPORTED)

    if (code := environment.prepare(settings)) is not None:  # the model's requirements
        return code
    preloaded: list[ServedModel] = []

    def when_ready(arbiter: Any) -> None:  # master: listeners bound, no worker forked yet
        preloaded.append(preload_model(settings, _gunicorn.listener_sockets(arbiter)))

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)
            if should_preload(settings):
                self.cfg.set("when_ready", when_ready)
            for key, value in metrics_hooks.items():  # metrics hook: gunicorn server hooks
                self.cfg.set(key, value)

        def load(self) -> Flask:  # runs in each worker after fork
            return create_app(settings, preloaded=preloaded[0] if preloaded else None)

    # metrics hook: one multiprocess directory for the workers' metrics
    with metrics.multiprocess_server(settings) as metrics_hooks:
        try:
            _App().run()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0
