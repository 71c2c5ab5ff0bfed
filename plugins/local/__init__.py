"""The local target (``mldeploy deploy --target local``): endpoints on the local Docker engine.

Files, as in every target (``plugins/README.md``): ``target.py`` the hooks the core calls,
``config.py`` the typed config, ``_client.py`` the Docker engine calls, ``_resources.py`` names
and labels (pure), ``errors.py`` SDK errors -> mldeploy errors, ``testing/`` its test kit; and
for this target ``_steps.py`` (the deploy steps, each recorded in the core's transaction),
``_state.py`` (state files), ``gateway.py`` with ``_http.py``, ``_upstream.py`` and ``_wire.py``
(the gateway process) and ``_gateway_ctl.py`` (starting and steering it). The docker SDK is
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldeploy.registry import lazy_exports

if TYPE_CHECKING:
    from mldeploy.plugins.local.target import LocalTarget

# What the target's extra installs: checked when the target is first asked for, so the registry
# can name the extra; importing this package imports nothing else.
NEEDS: tuple[str, ...] = ()

__all__ = ["LocalTarget"]
__getattr__ = lazy_exports(__name__, __all__, NEEDS)
