"""The flask engine's gunicorn worker: gunicorn's master does what it does well (bind, preload,
fork, replace a worker that exits, SIGTERM to every worker); each worker runs the asyncio front
of :mod:`._transport` and a pool of ``threads`` threads for the app.

Signals: SIGTERM drains (every request already received is answered with ``Connection: close``,
then the worker exits 0 within ``graceful_timeout``); SIGINT/SIGQUIT stop at once.

Retiring: a prediction that ran over the timeout keeps its thread busy (Python cannot stop a
thread), so the app calls ``environ["mldeploy.retire_worker"]``: the worker drains as on SIGTERM
(the other requests in flight finish) and exits; the master forks a replacement (with preload,
from the already loaded model: only the warm-up runs). The exit skips the interpreter's shutdown,
which would wait for the runaway thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..settings import ServerSettings
from . import _gunicorn, _wsgi
from ._transport import Front, Limits

_log = logging.getLogger("mldeploy.container")
_FDS_SPARE = 128  # files a worker needs besides its connections (model, libraries, pipes)
_HEARTBEAT_SECONDS = 1.0


def fd_budget(max_connections: int) -> int:
    """The connection cap this process can keep: raises the soft open-files limit towards the
    hard one when ``max_connections`` needs it, else lowers the cap to fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + _FDS_SPARE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        return max(2, soft - _FDS_SPARE)
    return max_connections


def worker_class(settings: ServerSettings) -> type:
    """A gunicorn worker class serving with ``settings``' limits."""
    base: Any = _gunicorn.worker_base()

    class BufferingWorker(base):  # type: ignore[misc, valid-type]
        def init_process(self) -> None:
            self._loop = asyncio.new_event_loop()
            self._front: Front | None = None
            self._drain_started = asyncio.Event()
            self._runaway = False
            self._quit_now = False
            self._early_drain: str | None = None  # SIGTERM before the front existed
            super().init_process()

        def init_signals(self) -> None:
            super().init_signals()
            self._loop.add_signal_handler(signal.SIGTERM, self._drain, "SIGTERM")
            self._loop.add_signal_handler(signal.SIGINT, self._quit)
            self._loop.add_signal_handler(signal.SIGQUIT, self._quit)

        def handle_exit(self, sig: int, frame: Any) -> None:  # gunicorn's own SIGTERM handler
            self._loop.call_soon_threadsafe(self._drain, "SIGTERM")

        def run(self) -> None:
            loop = self._loop
            asyncio.set_event_loop(loop)
            cap = fd_budget(settings.max_connections)
            if cap < settings.max_connections:
                _log.warning("open-files limit allows %d connections per worker, not %d "
                             "(MLDEPLOY_MAX_CONNECTIONS): raise `ulimit -n`", cap,
                             settings.max_connections)
            limits = dataclasses.replace(Limits.from_settings(settings), max_connections=cap)
            pool = ThreadPoolExecutor(max_workers=settings.threads,
                                      thread_name_prefix="mldeploy-http")
            app = _gunicorn.wsgi_app(self)

            async def dispatch(environ: dict[str, Any]) -> _wsgi.WsgiResponse:
                return await loop.run_in_executor(pool, _wsgi.call, app, environ)

            self._front = Front(loop, limits, dispatch,
                                {"mldeploy.retire_worker": self._retire})
            try:
                loop.run_until_complete(self._main(self._front, limits))
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            if self._runaway or self._quit_now:
                # A thread may still be running (the runaway prediction): do not let the
                # interpreter's shutdown join it.
                _log.info("worker %d exiting", os.getpid())
                logging.shutdown()
                sys.stderr.flush()
                os._exit(0)
            loop.close()

        async def _main(self, front: Front, limits: Limits) -> None:
            front.listen(_gunicorn.worker_listeners(self))
            if self._early_drain:
                self._drain(self._early_drain)
            heartbeat = self._loop.create_task(self._heartbeat())
            try:
                await self._drain_started.wait()
                if self._quit_now:
                    return
                if not await front.closed(limits.graceful_timeout):
                    _log.warning("worker %d: connections still open after the %g s drain were "
                                 "closed", os.getpid(), limits.graceful_timeout)
            finally:
                heartbeat.cancel()

        async def _heartbeat(self) -> None:
            while True:
                _gunicorn.heartbeat(self)
                if _gunicorn.parent_changed(self):
                    self._drain("the master process is gone")
                await asyncio.sleep(_HEARTBEAT_SECONDS)

        def _drain(self, reason: str) -> None:
            if self._front is None:
                self._early_drain = reason
                return
            if self._front.draining:
                return
            _gunicorn.stop_flag(self, False)
            _log.info("worker %d draining (%s): %d connection(s) open", os.getpid(), reason,
                      self._front.connections)
            self._front.drain(reason)
            self._drain_started.set()

        def _quit(self) -> None:
            self._quit_now = True
            _gunicorn.stop_flag(self, False)
            self._drain_started.set()

        def _retire(self, reason: str) -> None:
            """From an app thread: a prediction thread cannot be stopped; replace the worker."""
            self._runaway = True
            self._loop.call_soon_threadsafe(self._drain, f"retiring: {reason}")

    return BufferingWorker
