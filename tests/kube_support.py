"""Shared setup of the Kubernetes target's tests (their fixtures ``cluster`` and ``model2`` are in
``tests/conftest.py``): the base config, the example model and its body, a target that records
its progress events."""

from __future__ import annotations

from typing import Any

from mldeploy.plugins.kubernetes import KubernetesTarget
from mldeploy.plugins.kubernetes.testing import FakeCluster
from mldeploy.testing.conformance import example_model_dir

BASE = {"registry": "registry.test/ml", "poll_interval_seconds": 0.01, "timeout_seconds": 10}
MODEL = str(example_model_dir())
BODY = (example_model_dir() / "serving_input_example.json").read_bytes()


def make(cluster: FakeCluster, base: dict[str, Any] = BASE, **config: Any) -> KubernetesTarget:
    """A target on ``cluster`` with ``base`` + ``config``; its progress lines in ``.events``."""
    events: list[Any] = []
    target = KubernetesTarget({**base, **config}, clients=cluster.clients(),
                              progress=events.append)
    target.events = events  # type: ignore[attr-defined]
    return target
