"""The gunicorn attributes mldeploy's worker relies on (container/engines/_gunicorn.py), checked
against the installed gunicorn with a real arbiter and a real worker object (nothing forked)."""

from __future__ import annotations

import os
import socket
from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from mldeploy.container.engines import _gunicorn
from mldeploy.container.engines._worker import fd_budget, worker_class
from mldeploy.container.settings import ServerSettings


def test_installed_gunicorn_is_in_the_tested_range_and_pyproject_pins_the_same():
    assert _gunicorn.is_supported(), _gunicorn.version()
    (gunicorn_req,) = [Requirement(r) for r in requires("mldeploy") or []
                       if Requirement(r).name == "gunicorn"]
    low, high = _gunicorn.SUPPORTED
    assert Version(".".join(map(str, low))) in gunicorn_req.specifier
    assert Version(".".join(map(str, high))) not in gunicorn_req.specifier
    assert Version(f"{high[0] - 1}.99") in gunicorn_req.specifier


@pytest.fixture
def arbiter_and_worker():
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.sock import TCPSocket

    class App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", "127.0.0.1:0")

        def load(self):
            return lambda environ, start_response: []

    app = App()
    arbiter = Arbiter(app)
    listener = TCPSocket(("127.0.0.1", 0), app.cfg, arbiter.log)
    arbiter.LISTENERS = [listener]
    cls = worker_class(ServerSettings(workers=1))
    worker = cls(1, os.getppid(), [listener], app, 30, app.cfg, arbiter.log)
    yield arbiter, worker, listener
    listener.close()


def test_the_attributes_the_worker_reads_exist(arbiter_and_worker):
    arbiter, worker, listener = arbiter_and_worker
    (raw,) = _gunicorn.listener_sockets(arbiter)
    assert isinstance(raw, socket.socket) and raw.getsockname()[0] == "127.0.0.1"
    assert _gunicorn.worker_listeners(worker) == [raw]
    assert _gunicorn.raw_socket(raw) is raw  # a plain socket passes through
    assert _gunicorn.parent_changed(worker) is False
    worker.ppid = -1
    assert _gunicorn.parent_changed(worker) is True
    _gunicorn.heartbeat(worker)  # touches the worker's tmp file; raises if the API moved
    _gunicorn.stop_flag(worker, False)
    assert worker.alive is False
    worker.wsgi = "app"
    assert _gunicorn.wsgi_app(worker) == "app"
    base = _gunicorn.worker_base()
    assert isinstance(worker, base)
    for name in ("init_process", "init_signals", "load_wsgi", "handle_exit", "run"):
        assert callable(getattr(base, name)), name


def test_open_files_budget_fits_the_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fd_budget(10) == 10
    huge = fd_budget(10**9)
    assert 2 <= huge < 10**9
    assert huge <= resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= soft
