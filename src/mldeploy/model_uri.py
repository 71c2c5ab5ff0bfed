"""Model-URI resolution: local path, ``file:``, ``runs:/``, ``models:/name/version``,
``models:/name@alias``, ``s3://`` -> a local directory holding an MLmodel file.

(Placeholder: local paths only; the full resolver replaces this.)
"""

from __future__ import annotations

from pathlib import Path

from mldeploy.errors import ModelNotFoundError, NotAnMlflowModelError


def resolve_model_uri(uri: str, *, dst: str | Path | None = None) -> Path:
    """Return a local directory with the model at ``uri`` (downloading into ``dst`` if remote)."""
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"no model at {uri}", hint="check the path")
    if not (path / "MLmodel").is_file():
        raise NotAnMlflowModelError(f"{uri} has no MLmodel file", hint="point at an MLflow model")
    return path.resolve()
