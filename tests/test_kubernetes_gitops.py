"""Kubernetes manifests that a GitOps controller can own (issue #15, item 3), each test
reproducing what the user saw:

- the Deployment set ``spec.replicas: 2`` while an HPA (2-4) owned the count, so Argo CD / Flux
  reset the HPA's count on every sync;
- two replicas could share a node (a drain takes both, PDB or not);
- the model-URI annotation was a relative path from the laptop it was typed on;
- ``replace --dry-run -o yaml`` needed a cluster;
- ``app.kubernetes.io/version`` was a content hash.

Manifests are validated against the official schemas of Kubernetes 1.29-1.37 in strict mode
(``kubernetes-validate``), as ``test_kubernetes_manifests`` does.
"""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import yaml
from kube_support import BASE, MODEL, make

from mldeploy.config import build_config
from mldeploy.errors import ConfigError
from mldeploy.plugins.kubernetes import _checks
from mldeploy.plugins.kubernetes import manifests as m
from mldeploy.plugins.kubernetes._images import identity
from mldeploy.plugins.kubernetes.config import KubernetesConfig
from mldeploy.target import Action, DeployMode

kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

VERSIONS = [f"1.{minor}" for minor in range(29, 38)]
MODEL_OBJ = m.Model("models:/churn/3", "3", "ghcr.io/acme/churn:3f2a9c", "ab" * 32)


def _validate(obj: dict, label: str = "", versions: list[str] = VERSIONS) -> None:
    for version in versions:
        try:
            kv.validate(copy.deepcopy(obj), version, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the failure message
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{label or obj['kind']} is invalid for Kubernetes {version}: {path}: "
                        f"{exc.message}")


def _stable(config: dict) -> dict:
    return m.deployment(build_config(KubernetesConfig, config), "churn", "ml", MODEL_OBJ)


# -- replicas: the HPA's, not the manifest's ------------------------------------------------------


def test_no_replicas_in_the_deployment_when_an_hpa_owns_the_count():
    objs = m.create_set(build_config(KubernetesConfig, {}), "churn", "ml", MODEL_OBJ)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert "replicas" not in dep["spec"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    for obj in objs:
        _validate(obj)
    # Without an HPA the manifest says how many; a canary always does (no HPA scales it).
    assert _stable({"autoscale": "false", "min_replicas": "3"})["spec"]["replicas"] == 3
    canary = m.deployment(build_config(KubernetesConfig, {}), "churn", "ml", MODEL_OBJ,
                          variant=m.CANARY, replicas=1)
    assert canary["spec"]["replicas"] == 1


def test_a_gitops_sync_of_the_manifests_keeps_the_autoscalers_count(cluster):
    """What Argo CD / Flux do on every sync: apply the manifests from git to the live objects.
    The HPA had scaled the Deployment to 4; the sync must not put it back."""
    target = make(cluster)
    plan = target.plan(DeployMode.CREATE, "churn", MODEL)
    target.create("churn", MODEL)
    kube = target.kube()
    assert kube.get("Deployment", "churn")["spec"]["replicas"] == 2  # starts at min_replicas
    kube.patch("Deployment", "churn", {"spec": {"replicas": 4}})  # the HPA scales up
    for obj in yaml.safe_load_all(plan.to_yaml()):  # the sync (a merge of the manifest's fields)
        kube.patch(obj["kind"], obj["metadata"]["name"], {"spec": obj["spec"]})
    assert kube.get("Deployment", "churn")["spec"]["replicas"] == 4
    # And mldeploy's own replace leaves the count to the HPA as well.
    target.replace("churn", MODEL)
    assert kube.get("Deployment", "churn")["spec"]["replicas"] == 4


def test_create_starts_at_min_replicas_and_the_plan_says_who_owns_the_count(cluster):
    target = make(cluster, min_replicas=3, max_replicas=5)
    plan = target.plan(DeployMode.CREATE, "churn", MODEL)
    (dep_change,) = [c for c in plan.changes if c.resource.kind == "deployment"]
    assert "starts at 3 pods" in dep_change.detail and "HPA owns the count" in dep_change.detail
    target.create("churn", MODEL)
    stored = cluster.objects("Deployment")[0]
    assert stored["spec"]["replicas"] == 3
    assert len([p for p in cluster.objects("Pod")]) == 3


def test_the_fake_hpa_keeps_the_count_in_its_bounds(cluster):
    """The fake cluster's HPA controller does what the real one does without metrics: below
    minReplicas is scaled up to it, above maxReplicas down to it."""
    target = make(cluster)
    target.create("churn", MODEL)
    kube = target.kube()
    kube.patch("Deployment", "churn", {"spec": {"replicas": 1}})
    assert kube.get("Deployment", "churn")["spec"]["replicas"] == 2
    kube.patch("Deployment", "churn", {"spec": {"replicas": 9}})
    assert kube.get("Deployment", "churn")["spec"]["replicas"] == 4


# -- topology spread ------------------------------------------------------------------------------


def test_replicas_spread_over_nodes_by_default():
    dep = _stable({})
    pod = dep["spec"]["template"]
    node, zone = pod["spec"]["topologySpreadConstraints"]
    assert node["topologyKey"] == "kubernetes.io/hostname" and node["maxSkew"] == 1
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    assert node["nodeTaintsPolicy"] == "Honor"  # a cordoned node does not hold a drain up
    assert zone["topologyKey"] == "topology.kubernetes.io/zone"
    assert zone["whenUnsatisfiable"] == "ScheduleAnyway"
    for tsc in (node, zone):
        # It selects this variant's own pods, and counts one revision only (a rollout's surge
        # pods are not held back by the old ones).
        assert set(tsc["labelSelector"]["matchLabels"].items()) <= set(
            pod["metadata"]["labels"].items())
        assert tsc["labelSelector"]["matchLabels"][m.VARIANT] == m.STABLE
        assert tsc["matchLabelKeys"] == ["pod-template-hash"]
    _validate(dep)


@pytest.mark.parametrize(("spread", "expected"), [
    ("preferred", ["ScheduleAnyway", "ScheduleAnyway"]), ("off", None)])
def test_spread_can_be_relaxed_or_turned_off(spread, expected):
    dep = _stable({"spread": spread})
    tscs = dep["spec"]["template"]["spec"].get("topologySpreadConstraints")
    assert (None if tscs is None else [t["whenUnsatisfiable"] for t in tscs]) == expected
    _validate(dep)
    with pytest.raises(ConfigError, match="spread"):
        build_config(KubernetesConfig, {"spread": "always"})


def test_a_spread_that_selects_other_pods_is_refused():
    dep = _stable({})
    dep["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"][
        "matchLabels"][m.VARIANT] = m.CANARY
    with pytest.raises(ConfigError, match="does not select the Deployment's own pods"):
        _checks.check([dep])


def test_a_replace_from_an_older_manifest_adds_the_spread(cluster):
    """Deployments made before the spread existed get it on the next replace."""
    target = make(cluster, spread="off")
    target.create("churn", MODEL)
    plan = make(cluster).plan(DeployMode.REPLACE, "churn", MODEL)
    assert plan.changes[0].action is Action.UPDATE
    make(cluster).replace("churn", MODEL)
    spec = cluster.objects("Deployment")[0]["spec"]["template"]["spec"]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


# -- the model-URI annotation ------------------------------------------------------------------


def test_the_model_uri_annotation_resolves_from_anywhere(monkeypatch, tmp_path):
    """Typed as a relative path, the annotation used to be that relative path."""
    model = tmp_path / "models" / "churn"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert m.resolvable_uri("models/churn") == str(model)
    assert m.resolvable_uri("./models/../models/churn/") == str(model)
    assert m.resolvable_uri("~/models/churn") == str(model)
    assert m.resolvable_uri("file:models/churn") == model.as_uri()
    assert m.resolvable_uri(model.as_uri()) == model.as_uri()
    for uri in ("models:/churn/3", "models:/churn@prod", "runs:/abc/model", "s3://b/k"):
        assert m.resolvable_uri(uri) == uri
    cfg = build_config(KubernetesConfig, {})
    dep = m.deployment(cfg, "churn", "ml", m.Model("models/churn", "1", "img:1"))
    assert dep["metadata"]["annotations"][m.MODEL_URI] == str(model)
    assert dep["spec"]["template"]["metadata"]["annotations"][m.MODEL_URI] == str(model)
    secret = m.Model("https://user:hunter2@host/m.tar", "m", "img:1")
    assert "hunter2" not in str(m.deployment(cfg, "churn", "ml", secret)["metadata"])


def test_a_local_model_cannot_be_loaded_by_the_pods(cluster):
    """``model_source=uri`` hands the URI to the pods: a laptop path would crash-loop there."""
    with pytest.raises(ConfigError, match="does not exist in the cluster"):
        make(cluster, image="ghcr.io/acme/serve:1", model_source="uri").create("churn", MODEL)
    assert cluster.inventory() == set()


def test_get_reports_the_absolute_uri_of_a_relative_path(cluster, monkeypatch):
    monkeypatch.chdir(Path(MODEL).parent)
    target = make(cluster)
    dep = target.create("churn", Path(MODEL).name)
    assert dep.model_uri == MODEL


# -- version and digest labels -----------------------------------------------------------------


def test_the_version_label_is_the_models_and_the_digest_has_its_own(cluster):
    """A local model was labelled with its content hash as its version."""
    target = make(cluster)
    target.create("churn", MODEL)
    dep = cluster.objects("Deployment")[0]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ident = identity(Path(MODEL))
    from mldeploy import images

    digest = images.model_digest(Path(MODEL))
    assert labels[m.VERSION] == (ident.run_id or ident.model_uuid)[:12]
    assert labels[m.MODEL_DIGEST] == digest[:63]
    assert labels[m.VERSION] not in digest
    assert dep["metadata"]["labels"][m.VERSION] == labels[m.VERSION]
    assert target.get("churn").details["model_version"] == labels[m.VERSION]


@pytest.mark.parametrize(("uri", "mlmodel", "version"), [
    ("models:/churn/3", {"run_id": "r" * 32}, "3"),
    ("models:/churn@champion", {}, "champion"),
    ("runs:/0123456789abcdef0123/model", {"model_uuid": "u" * 32}, "0123456789ab"),
    ("/tmp/model", {"run_id": "fedcba9876543210", "model_uuid": "u" * 32}, "fedcba987654"),
    ("/tmp/model", {"model_uuid": 12345678901234567890}, "123456789012"),
    ("s3://bucket/path/model-v7/", {}, "model-v7"),
])
def test_version_comes_from_the_uri_then_the_mlmodel(tmp_path, uri, mlmodel, version):
    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": {}, **mlmodel}))
    assert m.model_version(uri, identity(tmp_path)) == version
    assert _checks.check_label_value(version)


def test_a_replace_with_the_same_version_but_other_files_says_so(cluster, tmp_path):
    import shutil

    target = make(cluster)
    target.create("churn", MODEL)
    other = tmp_path / "m2"
    shutil.copytree(MODEL, other)
    (other / "extra.txt").write_text("v2")
    change = target.plan(DeployMode.REPLACE, "churn", str(other)).changes[0]
    assert change.action is Action.UPDATE
    assert "other files (digest" in change.detail and "->" in change.detail


# -- replace --dry-run -o yaml without a cluster -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_kubeconfig(tmp_path):
    """A kubeconfig whose API server is a closed port on 127.0.0.1 (no cluster runs)."""
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {{server: "http://127.0.0.1:{_free_port()}"}}
users:
- name: dev
  user: {{token: not-a-real-token}}
contexts:
- name: gone
  context: {{cluster: gone, user: dev, namespace: ml}}
current-context: gone
""")
    return path


@pytest.mark.parametrize("kubeconfig", ["missing", "unreachable"])
@pytest.mark.parametrize("mode", ["replace", "add", "create"])
def test_dry_run_yaml_renders_offline(tmp_path, capsys, monkeypatch, dead_kubeconfig,
                                      kubeconfig, mode):
    """``deploy --mode replace --dry-run -o yaml`` used to need a cluster."""
    from mldeploy.cli import main

    path = tmp_path / "nowhere" if kubeconfig == "missing" else dead_kubeconfig
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    main(["deploy", "-t", "kubernetes", "-n", "churn", "-m", MODEL, "--mode", mode,
          "--dry-run", "-o", "yaml", "-C", "registry=registry.test/ml",
          "-C", "namespace=ml", "-C", "timeout_seconds=2"])
    captured = capsys.readouterr()
    docs = list(yaml.safe_load_all(captured.out))
    kinds = [d["kind"] for d in docs]
    if mode == "add":
        assert kinds == ["Deployment"] and docs[0]["metadata"]["name"] == "churn-canary"
    else:
        assert kinds == ["Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                         "Service"]
        assert "replicas" not in docs[0]["spec"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "ml"
        _validate(doc, versions=["1.29", "1.37"])  # every version: the tests above
    assert "rendering the manifests without comparing" in captured.err
    assert "Traceback" not in captured.err and "not-a-real-token" not in captured.err


def test_offline_replace_plan_says_it_compared_nothing(monkeypatch, tmp_path):
    from mldeploy.plugins.kubernetes import KubernetesTarget

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    plan = KubernetesTarget(BASE).plan(DeployMode.REPLACE, "churn", MODEL)
    assert {c.action for c in plan.changes} == {Action.UPDATE}
    assert all("not compared with the cluster" in c.detail for c in plan.changes)
    assert {c.resource.id for c in plan.changes} == {
        f"{k}/default/churn" for k in ("Deployment", "PodDisruptionBudget",
                                       "HorizontalPodAutoscaler", "Service")}
    assert os.environ["KUBECONFIG"].endswith("nowhere")
