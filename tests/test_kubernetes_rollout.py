"""Replace on the fake cluster: watched rollouts, automatic rollback with the reason, the old
pods serving throughout, exactly the failed ReplicaSet removed; the merge patches behind it; the
API errors' translation; kubeconfig loading."""

from __future__ import annotations

import pytest

pytest.importorskip("kmock", reason="kmock (the in-memory Kubernetes API) is not installed")
pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")

from kube_support import BASE, BODY, MODEL, make  # noqa: E402

from mldeploy.errors import (  # noqa: E402
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentNotFoundError,
    DeploymentTimeoutError,
    TargetError,
)
from mldeploy.plugins.kubernetes import KubernetesTarget  # noqa: E402
from mldeploy.plugins.kubernetes._ops import merge_patch  # noqa: E402
from mldeploy.plugins.kubernetes.errors import ApiError, translate  # noqa: E402
from mldeploy.target import Status  # noqa: E402

REVISION = "deployment.kubernetes.io/revision"


def pods(cluster):
    return {p["metadata"]["name"]: p for p in cluster.objects("Pod")}


def replicasets(cluster):
    return {rs["metadata"]["name"]: rs for rs in cluster.objects("ReplicaSet")}


def test_replace_rolls_out_a_new_revision(cluster, model2):
    target = make(cluster)
    first = target.create("churn", MODEL)
    old_sets = set(replicasets(cluster))
    dep = target.replace("churn", model2)
    assert dep.status is Status.READY and dep.model_uri == model2
    assert dep.details["revision"] == 2 and dep.details["image"] != first.details["image"]
    assert dep.details["model_version"] != first.details["model_version"]
    sets = replicasets(cluster)
    assert len(sets) == 2 and sets[next(iter(old_sets))]["spec"]["replicas"] == 0
    assert all(p["spec"]["containers"][0]["image"] == dep.details["image"]
               for p in pods(cluster).values())
    assert target.invoke("churn", BODY).predictions == [1, 1, 0]
    assert any("rolling out a new revision" in str(e) for e in target.events)


def test_failed_replace_rolls_back_and_keeps_the_old_pods_serving(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    before_pods = set(pods(cluster))
    before_sets = set(replicasets(cluster))
    (before_dep,) = cluster.objects("Deployment")
    cluster.fail_next_rollout("ValueError: the model needs numpy>=2")
    with pytest.raises(DeploymentFailedError) as info:
        target.replace("churn", model2)
    err = info.value
    assert "CrashLoopBackOff" in str(err) and "numpy>=2" in str(err)
    assert "Back-off restarting failed container" in str(err)
    assert err.hint and "previous model is still serving" in err.hint
    assert err.leftover == [] and len(err.cleaned) == 1 and err.cleaned[0].id.startswith(
        "ReplicaSet/default/churn-")
    # The old pods were never replaced (maxUnavailable 0) and serve on.
    assert before_pods <= set(pods(cluster))
    assert set(replicasets(cluster)) == before_sets, "exactly the failed ReplicaSet is gone"
    (after,) = cluster.objects("Deployment")
    assert after["spec"]["template"] == before_dep["spec"]["template"]
    dep = target.get("churn")
    assert dep.status is Status.READY and dep.model_uri == MODEL
    assert target.invoke("churn", BODY).predictions == [1, 1, 0]
    assert any("rolling back" in str(e) for e in target.events)


def test_replace_with_an_image_that_cannot_be_pulled_rolls_back(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    broken = make(cluster, image="registry.test/ml/typo:1")
    with pytest.raises(DeploymentFailedError, match="ImagePullBackOff|ErrImagePull") as info:
        broken.replace("churn", MODEL)
    assert 'Failed to pull image "registry.test/ml/typo:1"' in str(info.value)
    assert target.get("churn").details["image"].startswith("registry.test/ml/churn:")


def test_readiness_that_never_passes_hits_the_progress_deadline(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    cluster.push_image("registry.test/ml/unready:1", MODEL)
    cluster.set_behaviour("registry.test/ml/unready:1", "unready")
    slow = make(cluster, image="registry.test/ml/unready:1", progress_deadline_seconds="2")
    with pytest.raises(DeploymentFailedError, match="progressDeadlineSeconds") as info:
        slow.replace("churn", MODEL)
    assert not isinstance(info.value, DeploymentTimeoutError)
    assert "Readiness probe failed" in str(info.value)
    assert target.get("churn").status is Status.READY


def test_replace_that_times_out_rolls_back_too(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    cluster.push_image("registry.test/ml/unready:1", MODEL)
    cluster.set_behaviour("registry.test/ml/unready:1", "unready")
    with pytest.raises(DeploymentTimeoutError, match="timed out after 0.3 s"):
        make(cluster, image="registry.test/ml/unready:1").replace("churn", MODEL, timeout=0.3)
    dep = target.get("churn")
    assert dep.status is Status.READY and dep.details["image"].startswith("registry.test/ml/ch")


def test_replace_keeps_the_replica_count_the_autoscaler_set(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    kube = target.kube()
    kube.patch("Deployment", "churn", {"spec": {"replicas": 3}})  # what the HPA does
    target.replace("churn", model2)
    (dep,) = cluster.objects("Deployment")
    assert dep["spec"]["replicas"] == 3 and len(pods(cluster)) == 3


def test_replace_with_the_same_model_changes_nothing(cluster):
    target = make(cluster)
    target.create("churn", MODEL)
    (before,) = cluster.objects("Deployment")
    assert target.replace("churn", MODEL).details["revision"] == 1
    (after,) = cluster.objects("Deployment")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_replace_without_waiting_reports_updating(cluster, model2):
    target = make(cluster)
    target.create("churn", MODEL)
    dep = target.replace("churn", model2, wait=False)
    assert dep.status in (Status.UPDATING, Status.READY)


def test_replace_missing(cluster):
    with pytest.raises(DeploymentNotFoundError):
        make(cluster).replace("nothing", MODEL)


# -- merge patches ------------------------------------------------------------------------------


def test_merge_patch_turns_old_into_new_exactly():
    from kmock._internal.dicts import merge_patch_dict  # an independent RFC 7386 implementation

    old = {"metadata": {"labels": {"a": "1", "gone": "x"}, "annotations": {"k": "v"}},
           "spec": {"template": {"spec": {"containers": [{"image": "a"}], "dnsPolicy": "X"}},
                    "progressDeadlineSeconds": 600}}
    new = {"metadata": {"labels": {"a": "2"}, "annotations": {"k": "v", "n": "w"}},
           "spec": {"template": {"spec": {"containers": [{"image": "b"}]}},
                    "progressDeadlineSeconds": 600}}
    patch = merge_patch(old, new)
    assert merge_patch_dict(old, patch) == new
    assert merge_patch_dict(new, merge_patch(new, old)) == old
    assert merge_patch(old, old) == {}
    assert patch["metadata"]["labels"]["gone"] is None


# -- the API's status codes ---------------------------------------------------------------------


def test_the_fake_api_answers_like_a_real_one(cluster):
    target = make(cluster, autoscale="false", pdb="false", min_replicas="1")
    target.create("churn", MODEL)
    kube = target.kube()
    (dep,) = cluster.objects("Deployment")
    with pytest.raises(ApiError) as conflict:
        kube.create({k: v for k, v in dep.items() if k != "status"})
    assert conflict.value.status == 409
    assert isinstance(translate(conflict.value, "create churn"), DeploymentExistsError)
    with pytest.raises(ApiError) as immutable:
        kube.patch("Deployment", "churn", {"spec": {"selector": {"matchLabels": {"x": "y"}}}})
    assert immutable.value.status == 422
    err = translate(immutable.value, "replace churn")
    assert isinstance(err, ConfigError) and "spec.selector: field is immutable" in str(err)
    with pytest.raises(ApiError) as invalid:
        kube.patch("Deployment", "churn", {"spec": {"replicas": "three"}})
    assert invalid.value.status == 422 and "spec.replicas" in str(translate(invalid.value, "x"))
    assert kube.delete("Service", "churn") is True
    assert kube.delete("Service", "churn") is False  # the second delete is a 404
    assert kube.get("Service", "churn") is None
    assert "Traceback" not in str(translate(ApiError(500, "InternalError", "boom"), "get x"))


@pytest.mark.parametrize(("status", "cls", "words"), [
    (401, TargetError, "refused the credentials"), (403, TargetError, "forbidden"),
    (404, DeploymentNotFoundError, "no deployment named"), (429, TargetError, "re-run"),
])
def test_translate(status, cls, words):
    err = translate(ApiError(status, "R", "token=abc123 denied"), "get churn", name="churn")
    assert type(err) is cls and words in str(err).lower() + str(err.hint).lower()
    assert "abc123" not in str(err)


# -- kubeconfig ---------------------------------------------------------------------------------


@pytest.fixture
def kubeconfig(cluster, tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{cluster.url}"}}
users:
- name: dev
  user: {{token: not-a-real-token}}
contexts:
- name: fake-ml
  context: {{cluster: fake, user: dev, namespace: ml}}
- name: other
  context: {{cluster: fake, user: dev}}
current-context: other
""")
    return path


def test_kubeconfig_context_and_namespace(cluster, kubeconfig):
    path = kubeconfig
    target = KubernetesTarget({**BASE, "kubeconfig": str(path)}, location="fake-ml")
    target.clients = None
    target._clients()  # connect from the kubeconfig
    target.clients.build_image = cluster.build_image
    assert target.create("churn", MODEL).details["namespace"] == "ml"
    assert "Deployment/ml/churn" in cluster.inventory()
    with pytest.raises(ConfigError, match="kubeconfig") as info:
        KubernetesTarget({**BASE, "kubeconfig": str(path), "context": "nope"}).list()
    assert "not-a-real-token" not in str(info.value)


def test_cli_dry_run_through_the_registry(cluster, kubeconfig, capsys):
    from mldeploy.cli import main

    main(["deploy", "-t", "kubernetes:/fake-ml", "-n", "churn", "-m", MODEL, "--dry-run",
          "-C", f"kubeconfig={kubeconfig}", "-C", "registry=registry.test/ml"])
    out = capsys.readouterr().out
    assert "create churn on kubernetes would:" in out
    assert "+ deployment Deployment/ml/churn" in out
    assert cluster.inventory() == set()
    with pytest.raises(SystemExit) as failed:
        main(["get", "-t", "kubernetes:/fake-ml", "-n", "churn", "-C", f"kubeconfig={kubeconfig}"])
    assert failed.value.code == 2  # not found: bad input (the README's exit-code table)
    err = capsys.readouterr().err
    assert "no deployment 'churn' made by mldeploy" in err and "Traceback" not in err
