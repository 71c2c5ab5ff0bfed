"""Serving engines: thin adapters over :mod:`mldeploy.container.protocol`.

``run(settings)`` starts the engine named by ``settings.engine`` and blocks until shutdown.
"""

from __future__ import annotations

import logging
import sys

from ..settings import ServerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr (containers collect it); one handler, set up once per server."""
    root = logging.getLogger("mldeploy")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def run(settings: ServerSettings) -> int:
    """Run the configured engine; returns the exit code."""
    configure_logging(settings.log_level)
    if settings.engine == "flask":
        from .flask import run as run_flask

        return run_flask(settings)
    from .mlserver import run as run_mlserver

    return run_mlserver(settings)
