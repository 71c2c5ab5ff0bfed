"""The one place the flask engine touches gunicorn beyond its documented settings.

gunicorn documents ``worker_class`` as "a subclass of ``gunicorn.workers.base.Worker``" and the
``when_ready(arbiter)`` hook, but not the attributes a worker and the arbiter carry. Every such
attribute the engine reads is named here, and ``tests/test_gunicorn_shim.py`` checks each one
against the installed gunicorn (a real arbiter, a real worker). ``pyproject.toml`` pins gunicorn to
:data:`SUPPORTED`: a new major version is taken only after that test passed on it.

What is used:

* ``Worker(age, ppid, sockets, app, timeout, cfg, log)`` and its ``init_process()`` (calls
  ``init_signals()``, ``load_wsgi()`` then ``run()``), ``notify()`` (heartbeat), ``wsgi`` (the
  loaded app), ``sockets`` (the listeners, gunicorn socket wrappers), ``ppid``, ``alive``, ``log``;
* ``arbiter.LISTENERS`` (the bound listeners, in ``when_ready``);
* a listener wrapper's ``sock`` (the ``socket.socket``).
"""

from __future__ import annotations

import os
import socket
from typing import Any

# gunicorn versions this module is tested with: >= first, < second (pyproject.toml says the same).
SUPPORTED = ((22, 0), (27, 0))


def version() -> tuple[int, int]:
    import gunicorn

    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in gunicorn.__version__.split("."))
    return major, minor


def is_supported() -> bool:
    low, high = SUPPORTED
    return low <= version() < high


def worker_base() -> type:
    """The class custom workers derive from."""
    from gunicorn.workers.base import Worker

    return Worker


def listener_sockets(arbiter: Any) -> list[socket.socket]:
    """The sockets the arbiter bound (in ``when_ready``, before any worker is forked)."""
    return [raw_socket(listener) for listener in arbiter.LISTENERS]


def worker_listeners(worker: Any) -> list[socket.socket]:
    """The listening sockets a worker accepts on."""
    return [raw_socket(listener) for listener in worker.sockets]


def raw_socket(listener: Any) -> socket.socket:
    """The ``socket.socket`` inside one of gunicorn's listener wrappers."""
    return getattr(listener, "sock", listener)


def heartbeat(worker: Any) -> None:
    """Tell the arbiter the worker is alive (it kills a silent worker after ``timeout``)."""
    worker.notify()


def parent_changed(worker: Any) -> bool:
    """Whether the arbiter that forked the worker is gone."""
    return bool(worker.ppid != os.getppid())


def wsgi_app(worker: Any) -> Any:
    """The WSGI app the worker loaded."""
    return worker.wsgi


def stop_flag(worker: Any, alive: bool) -> None:
    """Keep gunicorn's own ``alive`` flag in step (its base signal handlers read it)."""
    worker.alive = alive
