"""Replace converges every object on the fake cluster (which fills in fields as a real API
server does: a Service's clusterIP and node ports, pod template defaults, canonical
quantities): changed HPA/PDB/Service settings are applied, objects no longer asked for are
deleted and newly asked for ones created, the plan lists each object's change, and a replace
that fails restores every object exactly."""

from __future__ import annotations

import pytest

pytest.importorskip("kmock", reason="kmock (the in-memory Kubernetes API) is not installed")
pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

from kube_support import BODY, MODEL, make  # noqa: E402

from mldeploy.errors import (  # noqa: E402
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
)
from mldeploy.plugins.kubernetes._client import Kube  # noqa: E402
from mldeploy.plugins.kubernetes._ops import SYSTEM_ANNOTATIONS  # noqa: E402
from mldeploy.plugins.kubernetes.errors import ApiError  # noqa: E402
from mldeploy.target import Action, DeployMode, Status  # noqa: E402

KINDS = ("Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service")
SIDE = KINDS[1:]


def stored(cluster, kind):
    objs = cluster.objects(kind)
    return objs[0] if objs else None


def snapshot(cluster):
    """Every object's labels, annotations (not the controller's) and spec, as stored - a
    Deployment's replica count only when no HPA owns it (the fake cluster's HPA moves it, as a
    real one does)."""
    out = {}
    scaled = {h["spec"]["scaleTargetRef"]["name"]
              for h in cluster.objects("HorizontalPodAutoscaler")}
    for kind in KINDS:
        for obj in cluster.objects(kind):
            meta = obj["metadata"]
            spec = {k: v for k, v in obj["spec"].items()
                    if not (kind == "Deployment" and k == "replicas" and meta["name"] in scaled)}
            out[f"{kind}/{meta['name']}"] = {
                "labels": meta.get("labels"), "spec": spec,
                "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                if not k.startswith(SYSTEM_ANNOTATIONS)}}
    return out


def actions(plan):
    return {c.resource.id.split("/")[0]: (c.action, c.detail) for c in plan.changes}


CHANGED = {"min_replicas": "3", "max_replicas": "7", "target_cpu_utilization": "55",
           "pdb_max_unavailable": "2", "service_type": "NodePort", "port": "8000",
           "labels": '{"team": "ml"}', "annotations": '{"example.com/owner": "ml-team"}'}


def test_replace_applies_changed_hpa_pdb_and_service_settings(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    cluster_ip = stored(cluster, "Service")["spec"]["clusterIP"]
    before = snapshot(cluster)
    changed = make(cluster, **CHANGED)
    plan = changed.plan(DeployMode.REPLACE, "churn", MODEL)
    got = actions(plan)
    assert {k: a for k, (a, _) in got.items()} == {k: Action.UPDATE for k in KINDS}
    assert "spec.minReplicas: 2 -> 3" in got["HorizontalPodAutoscaler"][1]
    assert "spec.maxUnavailable: 1 -> 2" in got["PodDisruptionBudget"][1]
    assert "spec.type: ClusterIP -> NodePort" in got["Service"][1]
    assert snapshot(cluster) == before  # the plan changed nothing

    dep = changed.replace("churn", MODEL)
    assert dep.status is Status.READY
    hpa = stored(cluster, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 55
    assert stored(cluster, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 2
    svc = stored(cluster, "Service")["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["port"] == 8000
    assert svc["clusterIP"] == cluster_ip and svc["ports"][0]["nodePort"] >= 30000
    for kind in KINDS:
        meta = stored(cluster, kind)["metadata"]
        assert meta["labels"]["team"] == "ml", kind
        assert meta["annotations"]["example.com/owner"] == "ml-team", kind
    assert any("updated Service/default/churn" in str(e) for e in changed.events)
    assert changed.invoke("churn", BODY).predictions == [1, 1, 0]
    # Converged: the same replace again changes nothing, the server's fields notwithstanding.
    again = actions(changed.plan(DeployMode.REPLACE, "churn", MODEL))
    assert {a for a, _ in again.values()} == {Action.KEEP}
    # Dropping the settings again removes them (labels included) and keeps the node port
    # out of a ClusterIP Service.
    make(cluster).replace("churn", MODEL)
    svc = stored(cluster, "Service")
    assert svc["spec"]["type"] == "ClusterIP" and "nodePort" not in svc["spec"]["ports"][0]
    assert all("team" not in stored(cluster, k)["metadata"]["labels"] for k in KINDS)


def test_side_settings_alone_do_not_roll_the_pods(cluster):
    make(cluster).create("churn", MODEL)
    pods = {p["metadata"]["name"] for p in cluster.objects("Pod")}
    plan = make(cluster, max_replicas="9").plan(DeployMode.REPLACE, "churn", MODEL)
    assert [c.action for c in plan.changes] == [Action.KEEP, Action.KEEP, Action.UPDATE,
                                                Action.KEEP]
    dep = make(cluster, max_replicas="9").replace("churn", MODEL)
    assert dep.details["revision"] == 1
    assert stored(cluster, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 9
    assert {p["metadata"]["name"] for p in cluster.objects("Pod")} == pods


def test_autoscaling_off_deletes_the_hpa_and_fixes_the_replicas(cluster):
    make(cluster).create("churn", MODEL)
    make(cluster).kube().patch("Deployment", "churn", {"spec": {"replicas": 4}})  # the HPA's
    fixed = make(cluster, autoscale="false", pdb="false", min_replicas="3")
    got = actions(fixed.plan(DeployMode.REPLACE, "churn", MODEL))
    assert got["HorizontalPodAutoscaler"][0] is Action.DELETE
    assert got["PodDisruptionBudget"][0] is Action.DELETE
    assert got["Deployment"] == (Action.UPDATE, "spec.replicas: 4 -> 3")
    fixed.replace("churn", MODEL)
    assert cluster.inventory() == {"Deployment/default/churn", "Service/default/churn"}
    assert stored(cluster, "Deployment")["spec"]["replicas"] == 3
    assert len(cluster.objects("Pod")) == 3
    # ... and on again: both are created; the replica count is the HPA's once more.
    got = actions(make(cluster, min_replicas="1").plan(DeployMode.REPLACE, "churn", MODEL))
    assert got["HorizontalPodAutoscaler"][0] is Action.CREATE
    assert got["PodDisruptionBudget"][0] is Action.CREATE and got["Deployment"][0] is Action.KEEP
    make(cluster, min_replicas="1").replace("churn", MODEL)
    assert cluster.inventory() == {f"{k}/default/churn" for k in KINDS}
    assert stored(cluster, "Deployment")["spec"]["replicas"] == 3


def test_dropped_pod_settings_are_removed_despite_server_defaults(cluster):
    """serviceAccountName is mirrored into the deprecated serviceAccount, from which the server
    fills it in again: both must go; canonical quantities (0.5 -> 500m) are no difference."""
    extra = {"service_account": "models", "node_selector": '{"pool": "cpu"}',
             "cpu_limit": "2", "cpu_request": "0.5", "image_pull_secrets": "regcred"}
    make(cluster, **extra).create("churn", MODEL)
    pod = stored(cluster, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccount"] == "models" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["containers"][0]["resources"]["requests"]["cpu"] == "500m"
    same = actions(make(cluster, **extra).plan(DeployMode.REPLACE, "churn", MODEL))
    assert same["Deployment"][0] is Action.KEEP
    make(cluster, cpu_request="0.5").replace("churn", MODEL)
    pod = stored(cluster, "Deployment")["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "serviceAccount", "nodeSelector", "imagePullSecrets"):
        assert key not in pod, key
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                 "limits": {"memory": "2Gi"}}
    assert pod["dnsPolicy"] == "ClusterFirst"  # the server's fields are left alone


@pytest.mark.parametrize("start", [{}, {"autoscale": "false", "pdb": "false"}],
                         ids=["hpa-deleted", "hpa-created"])
def test_failed_replace_restores_every_object_exactly(cluster, model2, start):
    make(cluster, **start).create("churn", MODEL)
    before = snapshot(cluster)
    flipped = {"autoscale": "true" if start else "false", "pdb": "true" if start else "false"}
    cluster.fail_next_rollout("ValueError: the model needs numpy>=2")
    with pytest.raises(DeploymentFailedError, match="numpy>=2") as info:
        make(cluster, **CHANGED, **flipped).replace("churn", model2)
    err = info.value
    assert err.leftover == [] and "objects restored" in (err.hint or "")
    # Where the replace created the HPA, the Deployment's fixed count (which the new HPA had
    # scaled at once) was put back too.
    assert {c.id for c in err.cleaned if c.kind != "replicaset"} == {
        f"{k}/default/churn" for k in SIDE} | ({"Deployment/default/churn"} if start else set())
    assert snapshot(cluster) == before
    if start:
        assert stored(cluster, "Deployment")["spec"]["replicas"] == 2
    dep = make(cluster).get("churn")
    assert dep.status is Status.READY and dep.model_uri == MODEL


def test_a_refused_update_undoes_the_earlier_ones(cluster, monkeypatch, model2):
    make(cluster).create("churn", MODEL)
    before = snapshot(cluster)
    real = Kube.patch

    def refuse_service(self, kind, name, patch):
        if kind == "Service":
            raise ApiError(422, "Invalid", "spec.ports[0].nodePort: provided port is already "
                                           "allocated")
        return real(self, kind, name, patch)

    monkeypatch.setattr(Kube, "patch", refuse_service)
    with pytest.raises(ConfigError, match="already allocated"):
        make(cluster, **CHANGED).replace("churn", model2)
    monkeypatch.undo()
    assert snapshot(cluster) == before
    assert make(cluster).get("churn").details["revision"] == 1  # no rollout started


def test_replace_refuses_objects_it_did_not_make(cluster):
    make(cluster, autoscale="false").create("churn", MODEL)
    cluster.create({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "churn", "namespace": "default"},
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "churn"},
                             "minReplicas": 1, "maxReplicas": 2}})
    before = snapshot(cluster)
    with pytest.raises(DeploymentExistsError, match="not made by mldeploy"):
        make(cluster, autoscale="false").replace("churn", MODEL)
    assert snapshot(cluster) == before


def test_promotion_keeps_the_stable_deployments_settings(cluster, model2):
    own = {"labels": '{"team": "ml"}', "progress_deadline_seconds": "300", "max_surge": "1",
           "autoscale": "false", "min_replicas": "3"}
    make(cluster, **own).create("churn", MODEL)
    make(cluster, **own).add("churn", model2)
    dep = make(cluster).traffic("churn", {"stable": 0, "canary": 1})  # no -C settings
    assert dep.model_uri == model2 and [v.name for v in dep.variants] == ["stable"]
    stable = stored(cluster, "Deployment")
    assert stable["metadata"]["labels"]["team"] == "ml"
    assert stable["spec"]["progressDeadlineSeconds"] == 300
    assert stable["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1
    assert stable["spec"]["template"]["metadata"]["labels"]["mldeploy.io/variant"] == "stable"
    assert len(cluster.objects("Pod")) == 3
