"""Canaries on the fake cluster: ``add`` runs a second Deployment under the same Service with a
pod ratio matching the weight (so the traffic share follows), ``traffic`` rescales, promotes or
drops it, ``invoke --variant`` reaches one variant, ``delete`` removes both."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("kmock", reason="kmock (the in-memory Kubernetes API) is not installed")
pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")

import kube_support as kube  # noqa: E402
from kube_support import BODY, MODEL  # noqa: E402

from mldeploy.errors import DeploymentFailedError, UsageError  # noqa: E402
from mldeploy.plugins.kubernetes._traffic import replicas_for  # noqa: E402
from mldeploy.target import DeployMode, Resource, Status  # noqa: E402

BASE = {**kube.BASE, "autoscale": "false", "min_replicas": "4", "max_replicas": "8",
        "canary_weight": "0.2"}


def make(cluster, **config):
    return kube.make(cluster, BASE, **config)


def pods_by_variant(cluster):
    return Counter(p["metadata"]["labels"]["mldeploy.io/variant"] for p in cluster.objects("Pod"))


@pytest.mark.parametrize(("stable", "weight", "canary"), [
    (4, 0.2, 1), (9, 0.1, 1), (2, 0.5, 2), (3, 0.25, 1), (8, 0.5, 8), (2, 0.01, 1)])
def test_replicas_for(stable, weight, canary):
    assert replicas_for(stable, weight) == canary


def test_add_runs_a_canary_under_the_same_service(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    dep = target.add("churn", model2)
    assert dep.status is Status.READY
    variants = {v.name: v for v in dep.variants}
    assert variants["stable"].model_uri == MODEL and variants["canary"].model_uri == model2
    assert variants["canary"].instance_count == 1 and variants["canary"].weight == pytest.approx(
        0.2)
    assert pods_by_variant(cluster) == {"stable": 4, "canary": 1}
    assert "Deployment/default/churn-canary" in {r.id for r in dep.resources}
    # The Service spreads requests over all ready pods: the canary answers 1 in 5.
    before = len(cluster.served())
    for _ in range(20):
        assert target.invoke("churn", BODY).predictions == [1, 1, 0]
    served = cluster.served()[before:]
    assert sum("churn-canary-" in p for p in served) == 4
    # One variant on request, through a pod of it.
    target.invoke("churn", BODY, variant="canary")
    assert "churn-canary-" in cluster.served()[-1]


def test_traffic_rescales_promotes_and_drops(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    canary_image = target.add("churn", model2).variants[1]
    dep = target.traffic("churn", {"stable": 1, "canary": 1})
    assert pods_by_variant(cluster) == {"stable": 4, "canary": 4}
    assert {v.name: v.weight for v in dep.variants} == {"stable": 0.5, "canary": 0.5}
    dep = target.traffic("churn", {"canary": 0})
    assert [v.name for v in dep.variants] == ["stable"] and dep.model_uri == MODEL
    assert pods_by_variant(cluster) == {"stable": 4}
    target.add("churn", model2)
    dep = target.traffic("churn", {"stable": 0, "canary": 1})  # promote
    assert [v.name for v in dep.variants] == ["stable"] and dep.model_uri == model2
    assert canary_image.model_uri == model2
    assert dep.details["revision"] == 2 and pods_by_variant(cluster) == {"stable": 4}
    assert "Deployment/default/churn-canary" not in cluster.inventory()


def test_failed_canary_is_removed_and_stable_untouched(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    before = cluster.inventory()
    cluster.fail_next_rollout("OSError: model file is truncated")
    with pytest.raises(DeploymentFailedError, match="model file is truncated") as info:
        target.add("churn", model2)
    assert info.value.cleaned == [Resource("deployment", "Deployment/default/churn-canary")]
    assert cluster.inventory() == before and pods_by_variant(cluster) == {"stable": 4}


def test_failed_promotion_rolls_back_and_keeps_the_canary(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    target.add("churn", model2)
    cluster.fail_next_rollout("RuntimeError: out of memory while loading")
    with pytest.raises(DeploymentFailedError, match="out of memory"):
        target.traffic("churn", {"canary": 1, "stable": 0})
    dep = target.get("churn")
    assert [v.name for v in dep.variants] == ["stable", "canary"]
    assert dep.model_uri == MODEL and dep.status is Status.READY


def test_misuse_is_refused(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    with pytest.raises(UsageError, match="no variant 'canary'"):
        target.traffic("churn", {"canary": 0.5})
    target.add("churn", model2)
    with pytest.raises(UsageError, match="already has a canary"):
        target.add("churn", model2)
    with pytest.raises(UsageError, match="negative"):
        target.traffic("churn", {"canary": -1})
    with pytest.raises(UsageError, match="add up to 0"):
        target.traffic("churn", {"canary": 0, "stable": 0})
    plan = target.plan(DeployMode.ADD, "churn", model2)
    assert plan.manifests[0]["metadata"]["name"] == "churn-canary"


def test_delete_removes_the_canary_too(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    target.add("churn", model2)
    gone = target.delete("churn")
    assert {r.id for r in gone.removed} == {"Deployment/default/churn",
                                            "Deployment/default/churn-canary",
                                            "Service/default/churn",
                                            "PodDisruptionBudget/default/churn"}
    assert cluster.inventory() == set() and cluster.objects("Pod") == []
    assert cluster.objects("ReplicaSet") == []


def test_the_autoscaler_scales_only_stable_and_get_reports_the_drift(cluster, model2):
    target = make(cluster, autoscale="true")
    target.create("churn", MODEL)
    target.add("churn", model2)
    (hpa,) = cluster.objects("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "churn"  # the canary has no autoscaler
    report = target.get("churn").details["canary"]
    assert (report["requested_weight"], report["weight"]) == (0.2, 0.2)
    assert "drift" not in report and "only the stable Deployment" in report["scaling"]
    target.kube().patch("Deployment", "churn", {"spec": {"replicas": 8}})  # what the HPA does
    report = target.get("churn").details["canary"]
    assert (report["stable_pods"], report["canary_pods"]) == (8, 1)
    assert report["weight"] == round(1 / 9, 4) and report["requested_weight"] == 0.2
    assert "now gets 11%" in report["drift"]
    assert report["drift"].endswith("mldeploy traffic -n churn -w stable=0.8,canary=0.2")
    dep = target.traffic("churn", {"stable": 0.8, "canary": 0.2})
    assert pods_by_variant(cluster) == {"stable": 8, "canary": 2}
    assert "drift" not in dep.details["canary"] and dep.details["canary"]["weight"] == 0.2
    dep = target.traffic("churn", {"stable": 1, "canary": 1})
    assert dep.details["canary"]["requested_weight"] == 0.5 and pods_by_variant(cluster) == {
        "stable": 8, "canary": 8}


def test_the_canary_manifest_validates_strictly(cluster, model2):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is missing")
    target = make(cluster)
    target.create("churn", MODEL)
    (canary,) = target.plan(DeployMode.ADD, "churn", model2).manifests
    assert canary["metadata"]["annotations"]["mldeploy.io/canary-weight"] == "0.2"
    for version in ("1.29", "1.37"):
        kv.validate(canary, version, strict=True)
