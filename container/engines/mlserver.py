"""The ``mlserver`` engine (optional extra ``mldeploy[mlserver]``).

Not available yet: it exits with a clear message rather than pretending to serve.
"""

from __future__ import annotations

import logging

from ..settings import ServerSettings

_log = logging.getLogger("mldeploy.container")


def run(settings: ServerSettings) -> int:
    _log.error(
        "engine 'mlserver' is not available in this version of mldeploy; use --engine flask"
    )
    return 2
