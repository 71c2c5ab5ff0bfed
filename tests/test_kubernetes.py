"""The Kubernetes target against the fake cluster (kmock's API emulator + validation,
controllers, events, logs and the service proxy; the real ``kubernetes`` client on 127.0.0.1):
the shared conformance suite, then create/get/list/delete specifics."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("kmock", reason="kmock (the in-memory Kubernetes API) is not installed")
pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

from kube_support import BASE, BODY, MODEL, make  # noqa: E402

from mldeploy.errors import (  # noqa: E402
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentNotFoundError,
    InvocationError,
    TargetError,
    UsageError,
)
from mldeploy.plugins.kubernetes import KubernetesPlan, KubernetesTarget  # noqa: E402
from mldeploy.target import Action, DeployMode, Status  # noqa: E402
from mldeploy.testing.conformance import TargetConformance  # noqa: E402


class TestKubernetesConformance(TargetConformance):
    @pytest.fixture
    def target(self, cluster):
        return make(cluster)

    @pytest.fixture
    def inventory(self, cluster):
        return cluster.inventory

    @pytest.fixture
    def fail_next_deploy(self, cluster):
        return cluster.fail_next_rollout


# -- create -------------------------------------------------------------------------------------


def test_create_makes_the_objects_and_serves_real_predictions(cluster):
    target = make(cluster)
    dep = target.create("churn", MODEL)
    assert {r.id for r in dep.resources} == {
        "Deployment/default/churn", "Service/default/churn",
        "HorizontalPodAutoscaler/default/churn", "PodDisruptionBudget/default/churn"}
    (deployment,) = cluster.objects("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "churn"
    assert labels["app.kubernetes.io/version"] == dep.details["model_version"]
    pods = cluster.objects("Pod")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    # The fake's proxy runs mldeploy's scoring protocol on the model the image holds.
    pred = target.invoke("churn", BODY)
    assert pred.predictions == [1, 1, 0]
    messages = [str(e) for e in target.events]
    assert any("2 of 2 pods available" in m for m in messages), messages
    assert any(e.status is Status.READY for e in target.events)


def test_create_refuses_objects_it_did_not_make(cluster):
    cluster.create({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "churn", "namespace": "default"},
                    "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 80}]}})
    with pytest.raises(DeploymentExistsError, match="not made by mldeploy"):
        make(cluster).create("churn", MODEL)
    assert cluster.inventory() == {"Service/default/churn"}
    # ... and delete leaves it alone: it carries no mldeploy labels.
    assert make(cluster).delete("churn").existed is False
    assert cluster.inventory() == {"Service/default/churn"}


def test_failed_create_reports_the_crash_without_a_traceback(cluster):
    cluster.fail_next_rollout("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                              "ModuleNotFoundError: No module named 'sklearn'")
    with pytest.raises(DeploymentFailedError) as info:
        make(cluster).create("churn", MODEL)
    message = str(info.value)
    assert "CrashLoopBackOff" in message and "No module named 'sklearn'" in message
    assert "Traceback" not in message and 'File "x.py"' not in message
    assert sorted(r.id for r in info.value.cleaned) == sorted([
        "Deployment/default/churn", "Service/default/churn",
        "HorizontalPodAutoscaler/default/churn", "PodDisruptionBudget/default/churn"])
    assert cluster.inventory() == set() and cluster.objects("Pod") == []


def test_image_that_cannot_be_pulled_fails_fast_and_cleans_up(cluster):
    with pytest.raises(DeploymentFailedError, match="ImagePullBackOff|ErrImagePull") as info:
        make(cluster, image="registry.test/ml/missing:1").create("churn", MODEL)
    assert 'Failed to pull image "registry.test/ml/missing:1"' in str(info.value)
    assert cluster.inventory() == set()


def test_create_times_out_when_readiness_never_passes(cluster):
    cluster.push_image("registry.test/ml/slow:1", MODEL)
    cluster.set_behaviour("registry.test/ml/slow:1", "unready")
    from mldeploy.errors import DeploymentTimeoutError

    with pytest.raises(DeploymentTimeoutError, match="Readiness probe failed") as info:
        make(cluster, image="registry.test/ml/slow:1").create("churn", MODEL, timeout=0.3)
    assert info.value.leftover == [] and cluster.inventory() == set()


def test_server_side_422_is_a_config_error_and_nothing_is_left(cluster):
    # A label the plugin passes through but the API server refuses (value too long).
    target = make(cluster, labels=json.dumps({"team": "x" * 70}))
    with pytest.raises(ConfigError, match="not a valid label value"):
        target.create("churn", MODEL)  # caught by the plugin's own checks before sending
    assert cluster.inventory() == set()


def test_create_without_image_or_registry_says_what_to_give(cluster):
    target = KubernetesTarget({"poll_interval_seconds": 0.01}, clients=cluster.clients())
    with pytest.raises(ConfigError, match="registry"):
        target.create("churn", MODEL)
    assert cluster.inventory() == set()


@pytest.mark.parametrize("name", ["Churn", "9lives", "a" * 57, "under_score"])
def test_invalid_names_are_refused_before_any_call(cluster, name):
    with pytest.raises(UsageError, match="not a valid deployment name on Kubernetes"):
        make(cluster).create(name, MODEL)


# -- get / list / delete ------------------------------------------------------------------------


def test_list_shows_only_mldeploys_deployments(cluster):
    target = make(cluster, autoscale="false", pdb="false", min_replicas="1")
    target.create("alpha", MODEL)
    target.create("beta", MODEL)
    cluster.create({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "other", "namespace": "default", "uid": "u1"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "o"}},
                             "template": {"metadata": {"labels": {"app": "o"}},
                                          "spec": {"containers": [{"name": "c",
                                                                   "image": "nginx"}]}}}})
    assert [d.name for d in target.list()] == ["alpha", "beta"]
    with pytest.raises(DeploymentNotFoundError):
        target.get("other")
    gone = target.delete("alpha")
    assert {r.id for r in gone.removed} == {"Deployment/default/alpha", "Service/default/alpha"}
    assert [d.name for d in target.list()] == ["beta"]
    assert "Deployment/default/other" in cluster.inventory()


def test_namespace_from_the_target_spec(cluster):
    target = KubernetesTarget(BASE, location="kind-kind/models", clients=cluster.clients())
    dep = target.create("churn", MODEL)
    assert dep.details["namespace"] == "models"
    assert cluster.inventory() == {f"{k}/models/churn" for k in (
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")}
    assert make(cluster).list() == []  # the default namespace has none


def test_load_balancer_url(cluster):
    dep = make(cluster, service_type="LoadBalancer", port="8000").create("churn", MODEL)
    assert dep.url is not None
    assert make(cluster, service_type="LoadBalancer", port="8000").get(
        "churn").url == "http://127.0.0.1:8000/invocations"


def test_unreachable_api_server_is_a_clean_target_error():
    from kubernetes import client

    from mldeploy.plugins.kubernetes._client import Clients

    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    target = KubernetesTarget(BASE, clients=Clients(client.ApiClient(cfg), "default"))
    with pytest.raises(TargetError, match="cannot reach the Kubernetes API server") as info:
        target.list()
    assert "Traceback" not in str(info.value)


# -- invoke -------------------------------------------------------------------------------------


def test_invoke_errors(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    with pytest.raises(InvocationError) as info:
        target.invoke("churn", b'{"nonsense": 1}')
    assert info.value.status == 400 and info.value.error_code == "BAD_REQUEST"
    with pytest.raises(DeploymentNotFoundError):
        target.invoke("nothing", BODY)
    pred = target.invoke("churn", BODY, variant="stable")
    assert pred.predictions == [1, 1, 0] and pred.variant == "stable"


# -- plan / dry run -----------------------------------------------------------------------------


def test_plan_carries_the_manifests_and_builds_nothing(cluster):
    built = []
    target = KubernetesTarget(BASE, clients=cluster.clients(
        build_image=lambda *a: built.append(a) or a[1]))
    plan = target.deploy("create", "churn", MODEL, dry_run=True)
    assert isinstance(plan, KubernetesPlan) and built == []
    assert [m["kind"] for m in plan.manifests] == [
        "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service"]
    import yaml

    assert list(yaml.safe_load_all(plan.to_yaml())) == list(plan.manifests)
    assert {str(r.id) for r in plan.by_action(Action.CREATE)} == {
        f"{m['kind']}/default/churn" for m in plan.manifests}
    assert cluster.inventory() == set()
    kserve = KubernetesTarget({**BASE, "output": "kserve"}, clients=cluster.clients())
    (isvc,) = kserve.plan(DeployMode.CREATE, "churn", MODEL).manifests
    assert isvc["kind"] == "InferenceService"
    with pytest.raises(UsageError, match="only prints an InferenceService"):
        kserve.create("churn", MODEL)
    assert cluster.inventory() == set()


def test_plan_replace_shows_the_version_change(cluster, tmp_path):
    import shutil

    target = make(cluster)
    target.create("churn", MODEL)
    other = tmp_path / "m2"
    shutil.copytree(MODEL, other)
    (other / "extra.txt").write_text("v2")
    plan = target.plan(DeployMode.REPLACE, "churn", str(other))
    change, *others = plan.changes
    assert change.action is Action.UPDATE and "model version" in change.detail
    assert "->" in change.detail
    assert [(c.action, c.resource.id) for c in others] == [
        (Action.KEEP, f"{kind}/default/churn")
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "Service")]
    assert [m["kind"] for m in plan.manifests] == [
        "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service"]
    assert target.get("churn").model_uri == MODEL  # nothing changed
