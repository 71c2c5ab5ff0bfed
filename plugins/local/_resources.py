"""Names and labels of what the local target creates, and the content hash of a model's image.

Everything carries the ``mldeploy-local-`` prefix and the ``io.mldeploy.local.*`` labels, so the
target only ever finds and removes its own containers. ``home`` (a hash of the state directory)
keeps endpoints of different state directories apart on one engine.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from mldeploy.redact import redact_uri

PREFIX = "mldeploy-local-"
IMAGE_REPO = "mldeploy-local-model"
LABEL = "io.mldeploy.local"
LABEL_ENDPOINT = "io.mldeploy.local.endpoint"
LABEL_VARIANT = "io.mldeploy.local.variant"
LABEL_HOME = "io.mldeploy.local.home"
LABEL_MODEL_URI = "io.mldeploy.local.model-uri"
LABEL_CONTENT = "io.mldeploy.local.content"


def home_id(state_dir: Path) -> str:
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]


def container_name(endpoint: str, variant: str) -> str:
    return f"{PREFIX}{endpoint}-{variant}-{secrets.token_hex(3)}"


def container_labels(home: str, endpoint: str, variant: str, model_uri: str) -> dict[str, str]:
    return {LABEL: "1", LABEL_HOME: home, LABEL_ENDPOINT: endpoint, LABEL_VARIANT: variant,
            LABEL_MODEL_URI: redact_uri(model_uri)[:1000]}


def endpoint_filter(home: str, endpoint: str | None = None) -> dict[str, str]:
    labels = {LABEL: "1", LABEL_HOME: home}
    if endpoint is not None:
        labels[LABEL_ENDPOINT] = endpoint
    return labels


def _hash_tree(h: hashlib._Hash, root: Path, suffixes: tuple[str, ...] | None = None,
               skip: tuple[str, ...] = ()) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).parts
        if "__pycache__" in rel or rel[0] in skip or (suffixes and path.suffix not in suffixes):
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")


def image_tag(model_dir: Path, *, engine: str, base_image: str | None) -> str:
    """``mldeploy-local-model:<hash>`` of what decides how the image serves: the model's files,
    the serving code of this mldeploy (not the image builder's), the engine and the base image."""
    import mldeploy
    import mldeploy.container

    h = hashlib.sha256()
    _hash_tree(h, Path(model_dir))
    _hash_tree(h, Path(mldeploy.container.__file__).parent, (".py",), skip=("image",))
    version = getattr(mldeploy, "__version__", "")
    h.update(f"\0{engine}\0{base_image or ''}\0{version}".encode())
    return f"{IMAGE_REPO}:{h.hexdigest()[:16]}"


__all__ = ["IMAGE_REPO", "LABEL", "LABEL_CONTENT", "LABEL_ENDPOINT", "LABEL_HOME",
           "LABEL_MODEL_URI", "LABEL_VARIANT", "PREFIX", "container_labels", "container_name",
           "endpoint_filter", "home_id", "image_tag"]
