"""The Docker Compose target (``mldeploy deploy --target compose[:/PROJECTS_DIR]``): a Compose
Specification project per deployment, run by the real Compose (``docker compose`` v2, or
``docker-compose``).

Files, as in every target: ``target.py`` the hooks the core calls (on the core's transaction),
``config.py`` the typed config, ``project.py`` the project files (pure: ``compose.yaml``,
``.env``, secrets, validated against the vendored Compose Specification schema in ``schema/``),
``_client.py`` the Compose and Docker calls, ``errors.py`` their errors -> mldeploy errors,
``proxy.py`` the small front proxy the project runs (switches traffic on replace), ``testing/``
its test kit (offline images for the optional services). Nothing is imported at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mldeploy.plugins.compose.target import ComposeTarget

# What the target's extra installs: checked when the target is first asked for.
NEEDS: tuple[str, ...] = ("yaml", "jsonschema")

__all__ = ["ComposeTarget"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import importlib.util

    for dep in NEEDS:
        if importlib.util.find_spec(dep) is None:
            raise ImportError(f"the compose target needs {dep}", name=dep)
    return getattr(importlib.import_module(f"{__name__}.target"), name)
