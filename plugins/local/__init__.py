"""The local target (``mldeploy deploy --target local``): endpoints on the local Docker engine.

Files, as in every target: ``target.py`` orchestration, ``config.py`` the typed config,
``_client.py`` the Docker engine calls, ``_resources.py`` names and labels, ``errors.py`` SDK
errors -> mldeploy errors; and for this target ``_rollout.py`` (deploy steps and their undo
ledger), ``_state.py`` (state files), ``gateway.py`` with ``_http.py``, ``_upstream.py`` and
``_wire.py`` (the gateway process) and ``_gateway_ctl.py`` (starting and steering it).
Importing this package imports neither the docker SDK nor anything else heavy.
"""

from mldeploy.plugins.local.target import LocalTarget

__all__ = ["LocalTarget"]
