"""Prometheus metrics of the serving container (``prometheus_client``), for both engines.

Names follow Prometheus' conventions (``mldeploy_`` prefix, base units, ``_seconds`` /
``_bytes`` / ``_total`` suffixes):

* ``mldeploy_requests_total{route,status}``: requests answered, by route and HTTP status;
* ``mldeploy_request_duration_seconds{route}``: end to end inside the server (body read, parse,
  model, serialisation, writing the answer);
* ``mldeploy_model_predict_seconds``: the model's own predict call only, so the server's
  overhead shows apart from the model (KServe's predict histogram, SageMaker's
  ModelLatency / OverheadLatency split);
* ``mldeploy_requests_in_flight``: requests being answered now;
* ``mldeploy_request_size_bytes{route}``, ``mldeploy_response_size_bytes{route}``: body sizes;
* ``mldeploy_model_load_seconds``: how long loading the model took;
* ``mldeploy_model_ready``: worker processes whose model is loaded and warmed up (0: not ready);
* ``mldeploy_info{version,mlflow_version,engine}`` and ``mldeploy_model_info{model_uuid,
  run_id,flavors,flavor_versions,saved_mlflow_version}``: constant 1, facts as labels.

gunicorn forks workers, each with its own counters: :func:`multiprocess_server` gives the server
a fresh directory in ``/tmp`` for ``prometheus_client``'s multiprocess mode (the only writable
path of a read-only root filesystem), removes the files of a dead worker's live gauges
(``mark_process_dead``) and the whole directory when the server exits; any worker's
``/metrics`` then reports the sum over all workers, past ones included.

Nothing here runs at import: metrics exist once :class:`ServerMetrics` is built.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_log = logging.getLogger("mldeploy.container")

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Routes get their own label value; anything else is "other" (a scanner must not create series).
ROUTES = frozenset({
    "/invocations", "/ping", "/health", "/version", METRICS_PATH,
})
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)
SIZE_BUCKETS = tuple(float(4**k) for k in range(3, 14))  # 64 B .. 64 MiB


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


class ServerMetrics:
    """The metrics of one server process.

    Outside multiprocess mode the metrics live in ``registry`` (a private registry by default,
    so several apps in one process never clash; the mlserver engine passes prometheus_client's
    global one, which MLServer's metrics server renders). In multiprocess mode (the environment
    names a directory) values go to that directory's files and :meth:`render` reads them all.
    """

    def __init__(self, engine: str, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        reg = None if self.multiprocess else registry
        self.requests = Counter(
            "mldeploy_requests", "Requests answered, by route and HTTP status.",
            ["route", "status"], registry=reg,
        )
        self.duration = Histogram(
            "mldeploy_request_duration_seconds",
            "Time from receiving a request to having written the answer, inside the server.",
            ["route"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.predict = Histogram(
            "mldeploy_model_predict_seconds",
            "Time of the model's own predict call (request duration minus this is the server's "
            "overhead).", buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.in_flight = Gauge(
            "mldeploy_requests_in_flight", "Requests being answered now.",
            registry=reg, multiprocess_mode="livesum",
        )
        self.request_size = Histogram(
            "mldeploy_request_size_bytes", "Request body sizes.", ["route"],
            buckets=SIZE_BUCKETS, registry=reg,
        )
        self.response_size = Histogram(
            "mldeploy_response_size_bytes", "Response body sizes.", ["route"],
            buckets=SIZE_BUCKETS, registry=reg,
        )
        self.load_seconds = Gauge(
            "mldeploy_model_load_seconds", "Seconds loading the model took.",
            registry=reg, multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "mldeploy_model_ready",
            "Server processes whose model is loaded and warmed up (0: not ready).",
            registry=reg, multiprocess_mode="livesum",
        )
        self.info = Gauge(
            "mldeploy_info", "mldeploy's version, MLflow's and the engine (constant 1).",
            ["version", "mlflow_version", "engine"], registry=reg, multiprocess_mode="livemax",
        )
        self.model_info = Gauge(
            "mldeploy_model_info", "Facts about the served model (constant 1).",
            ["model_uuid", "run_id", "flavors", "flavor_versions", "saved_mlflow_version"],
            registry=reg, multiprocess_mode="livemax",
        )
        self.ready.set(0)
        self.info.labels(*_versions(), engine).set(1)
        self._routes: dict[str, tuple[Any, Any, Any]] = {}

    # -- recording --------------------------------------------------------------------------

    def observe(self, route: str, status: int, seconds: float, request_bytes: int,
                response_bytes: int) -> None:
        """One answered request."""
        children = self._routes.get(route)
        if children is None:
            children = self._routes[route] = (
                self.duration.labels(route), self.request_size.labels(route),
                self.response_size.labels(route),
            )
        self.requests.labels(route, str(status)).inc()
        children[0].observe(seconds)
        children[1].observe(request_bytes)
        children[2].observe(response_bytes)

    def model_ready(self, model: Any) -> None:
        """The model of this process is loaded and warmed up: time its predict calls from now
        on, publish its facts."""
        instrument_model(model, self.predict.observe)
        seconds = getattr(model, "load_seconds", None)
        if seconds is not None:
            self.load_seconds.set(seconds)
        info = getattr(model, "info", None) or {}
        self.model_info.labels(
            str(info.get("model_uuid") or ""), str(info.get("run_id") or ""),
            ",".join(info.get("flavors") or ()), str(info.get("flavor_versions") or ""),
            str(info.get("mlflow_version") or ""),
        ).set(1)
        self.ready.set(1)

    def watch(self, runtime: Any) -> threading.Thread:
        """Call :meth:`model_ready` once ``runtime`` (a :class:`ModelRuntime`) is ready."""

        def _wait() -> None:
            runtime.ready.wait()
            if runtime.model is not None:
                self.model_ready(runtime.model)

        thread = threading.Thread(target=_wait, name="mldeploy-metrics-ready", daemon=True)
        thread.start()
        return thread

    # -- exposition -------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(exposition_registry(self.registry)), content_type


def exposition_registry(registry: Any) -> Any:
    """``registry``, or in multiprocess mode a registry collecting every process's files."""
    if not os.environ.get(MULTIPROC_ENV):
        return registry
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return merged


def _versions() -> tuple[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import mldeploy

    mlflow = ""
    for name in ("mlflow", "mlflow-skinny"):
        with contextlib.suppress(PackageNotFoundError):
            mlflow = version(name)
            break
    return mldeploy.__version__, mlflow


# -- the model's predict ---------------------------------------------------------------------


def instrument_model(model: Any, observe: Callable[[float], None]) -> None:
    """Time every call of the model's predict functions (the flavor's own, which the protocol
    calls on enforced input, and MLflow's ``PyFuncModel.predict``) with ``observe``. Calling it
    again replaces the observer instead of timing twice."""
    direct = getattr(model, "direct_predict", None)
    if direct is not None:
        model.direct_predict = _timed(direct, observe)
    pyfunc = getattr(model, "pyfunc", None)
    if pyfunc is not None and hasattr(pyfunc, "predict"):
        pyfunc.predict = _timed(pyfunc.predict, observe)


def _timed(fn: Callable[..., Any], observe: Callable[[float], None]) -> Callable[..., Any]:
    original = getattr(fn, "_mldeploy_untimed", fn)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            observe(time.perf_counter() - started)

    timed._mldeploy_untimed = original  # type: ignore[attr-defined]
    return timed


# -- WSGI (flask engine) ---------------------------------------------------------------------


class MetricsMiddleware:
    """Wraps a WSGI app: records every request and answers ``GET /metrics`` (when ``endpoint``)."""

    def __init__(self, app: Callable[..., Any], metrics: ServerMetrics, endpoint: bool) -> None:
        self.app, self.metrics, self.endpoint = app, metrics, endpoint

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        path = environ.get("PATH_INFO") or ""
        if self.endpoint and path == METRICS_PATH:
            return self._metrics(environ, start_response, started)
        route = route_label(path)
        seen: list[Any] = []

        def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                            ) -> Any:
            seen[:] = [status, headers]
            return start_response(status, headers, exc_info)

        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            body = self.app(environ, _start_response)
        except BaseException:
            metrics.in_flight.dec()
            metrics.observe(route, 500, time.perf_counter() - started, _length(environ), 0)
            raise
        return _Recorded(body, metrics, route, started, _length(environ), seen)

    def _metrics(self, environ: dict[str, Any], start_response: Callable[..., Any],
                 started: float) -> list[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            from .errors import error_body

            body = error_body("METHOD_NOT_ALLOWED", f"{method} is not allowed on /metrics", None)
            status, content_type = 405, "application/json"
        else:
            body, content_type = self.metrics.render(environ.get("HTTP_ACCEPT"))
            status = 200
        start_response(f"{status} {'OK' if status == 200 else 'Method Not Allowed'}", [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
        ])
        self.metrics.observe(METRICS_PATH, status, time.perf_counter() - started,
                             _length(environ), len(body))
        return [b"" if method == "HEAD" else body]


def _length(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class _Recorded:
    """The app's response iterable; records the request when the server closes it (the answer
    is written then)."""

    def __init__(self, body: Iterable[bytes], metrics: ServerMetrics, route: str, started: float,
                 request_bytes: int, seen: list[Any]) -> None:
        self._body, self._metrics, self._route = body, metrics, route
        self._started, self._request_bytes, self._seen = started, request_bytes, seen
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            metrics = self._metrics
            metrics.in_flight.dec()
            status = int(self._seen[0][:3]) if self._seen else 500
            metrics.observe(self._route, status, time.perf_counter() - self._started,
                            self._request_bytes, self._sent)


# -- the server process (flask engine under gunicorn) ----------------------------------------


@contextlib.contextmanager
def multiprocess_server(settings: Any) -> Iterator[dict[str, Any]]:
    """Set up multiprocess mode for a forking server and yield its gunicorn hooks.

    A fresh directory under ``/tmp`` (never a shared or stale one: ``PROMETHEUS_MULTIPROC_DIR``
    set by the operator is replaced for this server) holds the workers' files; ``child_exit``
    removes a dead worker's live-gauge files; a separate metrics port (``metrics_port``) is
    served from this process. With metrics off, nothing is set up.
    """
    if settings.metrics == "off":
        yield {}
        return
    owner = os.getpid()
    previous = os.environ.get(MULTIPROC_ENV)
    directory = tempfile.mkdtemp(prefix="mldeploy-metrics-", dir=_tmp_root())
    os.environ[MULTIPROC_ENV] = directory
    _log.info("workers' metrics in %s (removed at exit)", directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported
    server = None
    try:
        if settings.metrics_listener is not None:
            try:
                server = start_listener(settings.host, settings.metrics_listener,
                                        lambda: exposition_registry(None))
            except OSError as exc:
                _log.error("cannot serve metrics on %s:%d (%s): choose another "
                           "MLDEPLOY_METRICS_PORT", settings.host, settings.metrics_listener,
                           exc.strerror or exc)
                raise SystemExit(2) from None
        yield {"child_exit": _child_exit}
    finally:
        # Only in the server's own process: a forked worker leaving gunicorn passes through
        # here too (SystemExit in the child), and the directory is still the other workers'.
        if os.getpid() == owner:
            if server is not None:
                server.shutdown()
                server.server_close()
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous
            values.ValueClass = values.get_value_class()
            shutil.rmtree(directory, ignore_errors=True)


def _tmp_root() -> str:
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def start_listener(host: str, port: int, registry: Callable[[], Any]) -> Any:
    """Serve ``GET /metrics`` of ``registry()`` (called on each scrape) on its own port, in a
    daemon thread of this process. Returns the WSGI server (``shutdown()`` stops it)."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class _Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def _only_metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        return make_wsgi_app(registry())(environ, start_response)

    server = make_server(host, port, _only_metrics, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="mldeploy-metrics", daemon=True)
    thread.start()
    _log.info("metrics on http://%s:%d%s", host, port, METRICS_PATH)
    return server


def instrument_wsgi(app: Callable[..., Any], settings: Any, runtime: Any) -> MetricsMiddleware:
    """The flask engine's hook: ``app`` with its requests recorded, ``/metrics`` answered on the
    serving port (unless a separate ``metrics_port`` serves it), and the model's facts and
    predict timing published once ``runtime`` is ready."""
    server_metrics = ServerMetrics(settings.engine)
    server_metrics.watch(runtime)
    return MetricsMiddleware(app, server_metrics, endpoint=settings.metrics_listener is None)
