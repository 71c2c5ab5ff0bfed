"""Container images for MLflow models: dependencies resolved on the host into a wheelhouse,
installed offline in a multi-stage build, served by ``python -m mldeploy.container serve``.

Public API (imported on first use; nothing happens at import time)::

    build_docker(model_uri=None, name="mldeploy-model", **options) -> BuildResult
    generate_dockerfile(model_uri=None, output_dir=..., **options) -> DockerContext
    push_image(image, to, **options) -> PushResult
    ImageOptions, BuildResult, DockerContext, PushResult
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import build_docker
    from .context import generate_dockerfile
    from .options import BuildResult, DockerContext, ImageOptions, PushResult
    from .push import push_image

_EXPORTS = {
    "build_docker": ".build",
    "generate_dockerfile": ".context",
    "push_image": ".push",
    "ImageOptions": ".options",
    "BuildResult": ".options",
    "DockerContext": ".options",
    "PushResult": ".options",
}

__all__ = [
    "BuildResult",
    "DockerContext",
    "ImageOptions",
    "PushResult",
    "build_docker",
    "generate_dockerfile",
    "push_image",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
