"""Quantities are read by kubernetes.utils.parse_quantity (no hand-kept copy of the grammar)."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")

from kubernetes.utils import parse_quantity as upstream  # noqa: E402

from mldeploy.config import build_config  # noqa: E402
from mldeploy.errors import ConfigError  # noqa: E402
from mldeploy.plugins.kubernetes._checks import parse_quantity  # noqa: E402
from mldeploy.plugins.kubernetes.config import KubernetesConfig  # noqa: E402


@pytest.mark.parametrize("text", ["500m", "2Gi", "1e3", "4", "0.5", "512Mi", "1.5G", ".5", "3"])
def test_parse_quantity_is_kubernetes_own(text):
    assert parse_quantity(text) == Decimal(upstream(text))
    assert parse_quantity(4) == 4


@pytest.mark.parametrize("bad", ["abc", "", "1Z", "1.5.3", "Gi", True, 1.5, None])
def test_not_a_quantity(bad):
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(bad)


@pytest.mark.parametrize("bad", ["-1", "+2", "lots", "2 Gi"])
def test_config_refuses_what_is_not_a_resource_quantity(bad):
    with pytest.raises(ConfigError, match="is not a Kubernetes quantity"):
        build_config(KubernetesConfig, {"memory_limit": bad})


def test_config_accepts_quantities():
    cfg = build_config(KubernetesConfig, {"cpu_request": "500m", "memory_limit": "2Gi"})
    assert (cfg.cpu_request, cfg.memory_limit) == ("500m", "2Gi")
