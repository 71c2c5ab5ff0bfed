"""mldeploy's shipped test kit, for plugin authors and for users testing pipelines offline.

- :mod:`mldeploy.testing.conformance` - ``TargetConformance``, the checks every target passes
  (needs pytest).
- :mod:`mldeploy.testing.memory` - ``MemoryTarget``, an in-memory reference target.
- :mod:`mldeploy.testing.moto_sagemaker` - ``SageMakerEmulator``, moto extended with a real
  UpdateEndpoint, Creating/Updating durations and failure injection (needs moto).

Nothing is imported until asked for.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "TargetConformance": "mldeploy.testing.conformance",
    "MemoryTarget": "mldeploy.testing.memory",
    "MemoryBackend": "mldeploy.testing.memory",
    "SageMakerEmulator": "mldeploy.testing.moto_sagemaker",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mldeploy.testing' has no attribute {name!r}")
