"""Kubernetes manifests: strict validation against the official JSON schemas of Kubernetes
1.29-1.37 (the ``kubernetes-validate`` package) in wire form, the client's own models, semantic
checks in code, and what the objects must say (probes, security, rollout, labels)."""

from __future__ import annotations

import copy
import json

import pytest

from mldeploy.config import build_config
from mldeploy.errors import ConfigError
from mldeploy.plugins.kubernetes import _checks
from mldeploy.plugins.kubernetes import manifests as m
from mldeploy.plugins.kubernetes.config import KubernetesConfig

kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

VERSIONS = [f"1.{minor}" for minor in range(29, 38)]
MODEL = m.Model("models:/churn/3", "3", "ghcr.io/acme/churn:3f2a9c")

CONFIGS = {
    "default": {},
    "loadbalancer-no-hpa-no-pdb": {"service_type": "LoadBalancer", "autoscale": "false",
                                   "pdb": "false", "min_replicas": "1"},
    "everything": {"gpus": "1", "cpu_limit": "2", "memory_limit": "4Gi", "model_source": "uri",
                   "image_pull_secrets": "regcred", "service_account": "models",
                   "node_selector": '{"pool": "gpu"}', "writable_paths": "/var/cache/app",
                   "env": '{"LOG_LEVEL": "debug"}', "labels": '{"team": "ml"}',
                   "annotations": '{"example.com/owner": "ml-team"}', "max_surge": "1",
                   "pre_stop_seconds": "0", "service_type": "NodePort", "workers": "3",
                   "spread": "preferred"},
    "no-spread": {"spread": "off", "autoscale": "false"},
}


def objects(config: dict, *, canary: bool = True) -> list[dict]:
    cfg = build_config(KubernetesConfig, config)
    objs = m.create_set(cfg, "churn", "ml", MODEL)
    if canary:
        objs.append(m.deployment(cfg, "churn", "ml", MODEL, variant=m.CANARY, replicas=1))
    return objs


def all_objects() -> list[tuple[str, dict]]:
    return [(f"{label}/{o['kind']}/{o['metadata']['name']}", o)
            for label, config in CONFIGS.items() for o in objects(config)]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(version):
    kinds = set()
    for label, obj in all_objects():
        try:
            kv.validate(copy.deepcopy(obj), version, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the failure message
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{label} is invalid for Kubernetes {version}: {path}: {exc.message}")
        kinds.add(obj["kind"])
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_strict_schemas_catch_what_they_should(version):
    """The validator is not a rubber stamp: the v1-only HPA field, a misplaced field and a
    wrong type are all refused (so the test above can fail)."""
    hpa = m.hpa(build_config(KubernetesConfig, {}), "churn", "ml")
    hpa["spec"]["targetCPUUtilizationPercentage"] = 70
    with pytest.raises(kv.ValidationError):
        kv.validate(hpa, version, strict=True)
    dep = m.deployment(build_config(KubernetesConfig, {}), "churn", "ml", MODEL)
    dep["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, version, strict=True)
    svc = m.service(build_config(KubernetesConfig, {}), "churn", "ml")
    svc["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kv.ValidationError):
        kv.validate(svc, version, strict=True)


def test_the_client_models_round_trip_the_wire_form():
    """The kubernetes client's typed models read every field we send and write back exactly the
    same wire form (no field silently dropped or renamed)."""
    client = pytest.importorskip("kubernetes.client", reason="the kubernetes client is missing")
    api = client.ApiClient()
    types = {"Deployment": "V1Deployment", "Service": "V1Service",
             "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
             "PodDisruptionBudget": "V1PodDisruptionBudget"}

    class Response:  # the response object the 31-36 clients deserialize
        def __init__(self, obj):
            self.data = json.dumps(obj).encode()

    import inspect

    new_style = "content_type" in inspect.signature(api.deserialize).parameters  # 37+
    for label, obj in all_objects():
        if new_style:
            model = api.deserialize(json.dumps(obj), types[obj["kind"]], "application/json")
        else:
            model = api.deserialize(Response(obj), types[obj["kind"]])
        assert api.sanitize_for_serialization(model) == obj, label


def test_kserve_inference_service_is_semantically_valid():
    cfg = build_config(KubernetesConfig, {"output": "kserve"})
    isvc = m.inference_service(cfg, "churn", "ml", MODEL)
    _checks.check([isvc])
    predictor = isvc["spec"]["predictor"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert predictor["containers"][0]["image"] == MODEL.image
    assert predictor["containers"][0]["ports"][0]["containerPort"] == 8080
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 4)
    # The pod-level fields KServe passes through validate as a PodSpec of every version.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {k: v for k, v in predictor.items() if k in ("containers", "volumes",
                                                                 "securityContext")}}
    for version in VERSIONS:
        kv.validate(pod, version, strict=True)


# -- what the objects say -----------------------------------------------------------------------


def test_deployment_is_what_a_careful_engineer_writes():
    cfg = build_config(KubernetesConfig, {})
    dep = m.deployment(cfg, "churn", "ml", MODEL)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["serve"] and c["ports"][0]["containerPort"] == 8080
    assert c["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/ping"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= cfg.startup_timeout_seconds
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                              "limits": {"memory": "2Gi"}}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc[
        "allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] == 10001
    mounts = {vm["mountPath"]: vm["name"] for vm in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/dev/shm"]]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SAGEMAKER_BIND_TO_PORT"] == "8080" and env["MLDEPLOY_GRACEFUL_TIMEOUT"] == "25"
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1" and "MLDEPLOY_MODEL_URI" not in env
    # SIGKILL comes only after the preStop sleep and the server's whole drain.
    assert pod["terminationGracePeriodSeconds"] >= 5 + 25
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "churn"
    assert labels["app.kubernetes.io/version"] == "3"
    assert spec["template"]["metadata"]["annotations"][m.MODEL_URI] == "models:/churn/3"
    assert set(spec["selector"]["matchLabels"].items()) <= set(labels.items())
    assert "app.kubernetes.io/version" not in spec["selector"]["matchLabels"], \
        "selectors are immutable: a model version in them would block every replace"


def test_service_and_pdb_select_both_variants_and_hpa_is_v2():
    objs = objects({})
    svc = next(o for o in objs if o["kind"] == "Service")
    pdb = next(o for o in objs if o["kind"] == "PodDisruptionBudget")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        pod_labels = dep["spec"]["template"]["metadata"]["labels"].items()
        assert set(svc["spec"]["selector"].items()) <= set(pod_labels)
        assert set(pdb["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels)
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                               "averageUtilization": 70}
    assert hpa["spec"]["scaleTargetRef"]["name"] == "churn"
    assert [o["kind"] for o in objects({"autoscale": "false", "pdb": "false"},
                                       canary=False)] == ["Deployment", "Service"]


def test_model_source_uri_passes_the_uri_and_credentials_are_scrubbed():
    cfg = build_config(KubernetesConfig, {"model_source": "uri"})
    model = m.Model("https://user:secret@models.example.com/m.tar", "m", "img:1")
    dep = m.deployment(cfg, "churn", "ml", model)
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLDEPLOY_MODEL_URI"] == model.uri
    assert "secret" not in json.dumps(dep["metadata"]) and "secret" not in json.dumps(
        dep["spec"]["template"]["metadata"])


@pytest.mark.parametrize(("uri", "version"), [
    ("models:/churn/3", "3"),
    ("models:/churn@champion", "champion"),
    ("runs:/0123456789abcdef0123/model", "0123456789ab"),
    ("s3://bucket/path/model-v7/", "model-v7"),
    ("models:/x/" + "9" * 80, "9" * 63),
])
def test_model_version_labels(uri, version):
    """From the URI; the MLmodel's run id or uuid otherwise (tests/test_kubernetes_gitops.py),
    never the content digest (it has its own label)."""
    assert m.model_version(uri) == version
    assert _checks.check_label_value(version)


def test_yaml_stream_round_trips():
    import yaml

    objs = objects({})
    assert list(yaml.safe_load_all(m.to_yaml(objs))) == objs


# -- semantic checks ---------------------------------------------------------------------------


def _dep(**config):
    return m.deployment(build_config(KubernetesConfig, config), "churn", "ml", MODEL)


def test_generated_objects_pass_the_semantic_checks():
    for config in CONFIGS.values():
        _checks.check(objects(config))


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda o: o[0]["spec"]["selector"]["matchLabels"].update(x="y"), "does not match"),
    (lambda o: o[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
     .update(cpu="lots"), "not a quantity"),
    (lambda o: o[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
     .update(memory="3Gi"), "exceeds its limit"),
    (lambda o: o[2]["spec"].update(minReplicas=5, maxReplicas=2), "at most maxReplicas"),
    (lambda o: o[2]["spec"]["scaleTargetRef"].update(name="other"), "scaleTargetRef"),
    (lambda o: o[3]["metadata"].update(name="9lives"), "DNS-1035"),
    (lambda o: o[0]["metadata"].update(name="Churn_Model"), "DNS subdomain"),
    (lambda o: o[0]["metadata"]["labels"].update(bad="-x-"), "not a valid label value"),
    (lambda o: o[3]["spec"]["selector"].update(other="x"), "does not match the pods"),
    (lambda o: o[1]["spec"]["selector"]["matchLabels"].update(other="x"), "does not match"),
    (lambda o: o[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
     .update(port="web"), "does not declare"),
    (lambda o: o[0]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].pop(0),
     "writable /tmp"),
    (lambda o: o[0]["spec"]["strategy"]["rollingUpdate"].update(maxSurge=0),
     "cannot both be 0"),
])
def test_semantic_checks_catch_what_schemas_cannot(breaks, message):
    objs = objects({}, canary=False)  # Deployment, PDB, HPA, Service
    assert [o["kind"] for o in objs] == ["Deployment", "PodDisruptionBudget",
                                         "HorizontalPodAutoscaler", "Service"]
    breaks(objs)
    with pytest.raises(ConfigError, match=message):
        _checks.check(objs)


@pytest.mark.parametrize(("value", "expected"), [
    ("500m", "0.5"), ("2", "2"), ("1Gi", str(2**30)), ("1.5G", "1.5E+9"), ("1e3", "1E+3"),
])
def test_parse_quantity(value, expected):
    from decimal import Decimal

    assert _checks.parse_quantity(value) == Decimal(expected)


@pytest.mark.parametrize("value", ["lots", "1GB", "", "1.2.3", "m"])
def test_parse_quantity_refuses(value):
    with pytest.raises(ValueError):
        _checks.parse_quantity(value)


# -- strict config -----------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "message"), [
    ({"max_replica": "3"}, "did you mean 'max_replicas'"),
    ({"min_replicas": "5", "max_replicas": "2"}, "exceeds max_replicas"),
    ({"cpu_request": "lots"}, "not a Kubernetes quantity"),
    ({"cpu_request": "none"}, "autoscale needs cpu_request"),
    ({"max_surge": "0"}, "positive count or percent"),
    ({"namespace": "ML_Team"}, "not a valid namespace"),
    ({"service_type": "Ingress"}, "not valid"),
    ({"writable_paths": "relative/dir"}, "absolute directory"),
    ({"canary_weight": "1.5"}, "out of range"),
    ({"env": '{"1BAD": "x"}'}, "environment variable"),
])
def test_config_is_strict(config, message):
    with pytest.raises(ConfigError, match=message):
        build_config(KubernetesConfig, config)
