"""End to end on a real cluster: kind (Kubernetes in Docker).

Builds the example model's image with the image builder, ``kind load docker-image``s it, deploys
it with the Kubernetes target, invokes it through the API server's service proxy, replaces it
with a broken model and watches the rollout fail and roll back (the old model serving on),
replaces it with a good one, changes the HPA/PDB/Service settings (and checks a second plan
finds nothing to change against the real server's defaulting), runs a canary, checks the
``--dry-run`` manifests with the API server's own validation (``kubectl apply
--dry-run=server``), and deletes everything.

Runs wherever the ``kind`` binary and a Docker engine are present; skips, saying which is
missing, elsewhere (our CI machines reach no image registry, so kind cannot start there: the
hosted-runner workflow ``.github/workflows/kind.yml`` runs exactly this file). Environment:

- ``MLDEPLOY_KIND_CLUSTER``: use this existing kind cluster (else one is created and deleted);
- ``MLDEPLOY_E2E_REQUIRED=1``: fail instead of skipping when kind or Docker is missing (CI);
- ``MLDEPLOY_E2E_BASE_IMAGE``: base image for the build (default: the builder's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from mldeploy.testing.conformance import example_model_dir

pytestmark = pytest.mark.integration

REQUIRED = os.environ.get("MLDEPLOY_E2E_REQUIRED") == "1"
NAME = "churn-e2e"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"MLDEPLOY_E2E_REQUIRED is set but {reason}")
    pytest.skip(reason)


def _run(*cmd: str, stdin: str | None = None, timeout: float = 600) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def kind(tmp_path_factory):
    """``(cluster name, kubeconfig path)`` of a running kind cluster."""
    if shutil.which("kind") is None:
        _unavailable("the kind binary is not installed (kind end-to-end tests run on a hosted "
                     "runner: .github/workflows/kind.yml)")
    pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
    try:
        from mldeploy.container.image.build import docker_client

        docker_client(timeout=10)
    except Exception as exc:  # BuildError: no engine answers
        _unavailable(f"no Docker engine for kind ({exc})")
    name = os.environ.get("MLDEPLOY_KIND_CLUSTER")
    created = False
    if not name:
        name = f"mldeploy-{uuid.uuid4().hex[:6]}"
        _run("kind", "create", "cluster", "--name", name, "--wait", "180s", timeout=900)
        created = True
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    kubeconfig.write_text(_run("kind", "get", "kubeconfig", "--name", name))
    try:
        yield name, kubeconfig
    finally:
        if created:
            subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True,
                           timeout=300)


def _image(kind, model_dir: Path, tag: str) -> str:
    """Build the model's image and load it into the kind nodes (no registry needed)."""
    from mldeploy.container.image import build_docker

    image = f"mldeploy-e2e/classifier:{tag}"
    options = {}
    if os.environ.get("MLDEPLOY_E2E_BASE_IMAGE"):
        options["base_image"] = os.environ["MLDEPLOY_E2E_BASE_IMAGE"]
    build_docker(str(model_dir), name=image, log=print, **options)
    _run("kind", "load", "docker-image", image, "--name", kind[0], timeout=900)
    return image


@pytest.fixture(scope="module")
def images(kind, tmp_path_factory):
    """A good image, a second good one (another model version) and a broken one (its model
    file is truncated: the server cannot load it and exits)."""
    root = tmp_path_factory.mktemp("models")
    good2 = root / "good2"
    shutil.copytree(example_model_dir(), good2)
    (good2 / "VERSION.txt").write_text("2\n")
    broken = root / "broken"
    shutil.copytree(example_model_dir(), broken)
    (broken / "model.pkl").write_bytes((broken / "model.pkl").read_bytes()[:40])
    return {"good": _image(kind, example_model_dir(), "1"), "good2": _image(kind, good2, "2"),
            "broken": _image(kind, broken, "broken")}


def _target(kind, image: str, **extra):
    from mldeploy.plugins.kubernetes import KubernetesTarget

    config = {"kubeconfig": str(kind[1]), "image": image, "min_replicas": 2, "max_replicas": 3,
              "cpu_request": "100m", "memory_request": "256Mi", "timeout_seconds": 300,
              "poll_interval_seconds": 1, "startup_timeout_seconds": 120, **extra}
    return KubernetesTarget(config, location=f"kind-{kind[0]}/default",
                            progress=lambda e: print(e))


def test_deploy_invoke_rollback_canary_delete(kind, images):
    from mldeploy.errors import DeploymentFailedError, DeploymentNotFoundError
    from mldeploy.target import Action, DeployMode, Status

    body = (example_model_dir() / "serving_input_example.json").read_bytes()
    target = _target(kind, images["good"])
    target.delete(NAME)  # a leftover of an interrupted run
    try:
        dep = target.create(NAME, str(example_model_dir()))
        assert dep.status is Status.READY
        assert target.invoke(NAME, body).predictions == [1, 1, 0]

        with pytest.raises(DeploymentFailedError) as info:
            _target(kind, images["broken"]).replace(NAME, str(example_model_dir()))
        assert "CrashLoopBackOff" in str(info.value) or "exit code" in str(info.value)
        assert "Traceback" not in str(info.value)
        after = target.get(NAME)
        assert after.status is Status.READY and after.details["image"] == images["good"]
        assert target.invoke(NAME, body).predictions == [1, 1, 0]

        dep = _target(kind, images["good2"]).replace(NAME, str(example_model_dir()))
        assert dep.status is Status.READY and dep.details["image"] == images["good2"]

        # Changed settings of the other objects converge too, and against the real API
        # server's defaulting (clusterIP, node ports, pod template defaults) a second plan
        # with the same config changes nothing.
        changed = _target(kind, images["good2"], max_replicas=4, pdb_max_unavailable=2,
                          service_type="NodePort", labels={"team": "e2e"})
        changed.replace(NAME, str(example_model_dir()))
        kube = target.kube()
        assert kube.get("HorizontalPodAutoscaler", NAME)["spec"]["maxReplicas"] == 4
        assert kube.get("PodDisruptionBudget", NAME)["spec"]["maxUnavailable"] == 2
        svc = kube.get("Service", NAME)
        assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["labels"]["team"] == "e2e"
        plan = changed.plan(DeployMode.REPLACE, NAME, str(example_model_dir()))
        assert {c.action for c in plan.changes} == {Action.KEEP}, str(plan)
        assert target.invoke(NAME, body).predictions == [1, 1, 0]

        dep = _target(kind, images["good"], canary_weight=0.34).add(NAME,
                                                                     str(example_model_dir()))
        assert [v.name for v in dep.variants] == ["stable", "canary"]
        assert target.invoke(NAME, body, variant="canary").predictions == [1, 1, 0]
        dep = target.traffic(NAME, {"canary": 0})
        assert [v.name for v in dep.variants] == ["stable"]
    finally:
        gone = target.delete(NAME)
    assert gone.existed
    with pytest.raises(DeploymentNotFoundError):
        target.get(NAME)


def test_dry_run_manifests_pass_the_api_servers_validation(kind, images):
    if shutil.which("kubectl") is None:
        _unavailable("kubectl is not installed")
    from mldeploy.target import DeployMode

    plan = _target(kind, images["good"]).plan(DeployMode.CREATE, "dry-run-check",
                                              str(example_model_dir()))
    out = _run("kubectl", "--kubeconfig", str(kind[1]), "apply", "--dry-run=server",
               "--validate=strict", "-f", "-", stdin=plan.to_yaml())
    assert out.count("(server dry run)") == len(plan.manifests)
