"""The in-memory reference target under the name ``memory`` for CLI and API tests."""

from __future__ import annotations

from mldeploy.registry import Registry
from mldeploy.testing.memory import MemoryBackend, MemoryTarget


def register_memory_target(monkeypatch, backend: MemoryBackend) -> MemoryBackend:
    """Make target name 'memory' resolve to a MemoryTarget on ``backend`` (one shared one)."""

    class Shared(MemoryTarget):
        def __init__(self, config=None, **kw):
            kw["clients"] = backend
            super().__init__(config, **kw)

    real = Registry.target_class
    monkeypatch.setattr(Registry, "target_class",
                        lambda self, name: Shared if name == "memory" else real(self, name))
    return backend
