"""The image service (mldeploy.images) and what goes into an image (model_files), without a
Docker engine: the model's files only (#17), one build block / digest / builder seam / download
for every target (#10), the offline base image and the image traps of a new user (#15)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from mldeploy import example_model_path, images
from mldeploy.config import build_config
from mldeploy.container.image import model_files
from mldeploy.errors import BuildError, ConfigError
from mldeploy.images import BuildOptions

EXAMPLE = Path(example_model_path())


@pytest.fixture(autouse=True)
def no_base_image_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set MLDEPLOY_BASE_IMAGE themselves where they mean to."""
    monkeypatch.delenv("MLDEPLOY_BASE_IMAGE", raising=False)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The example model plus what a laptop's model directory tends to hold."""
    dst = tmp_path / "model"
    shutil.copytree(EXAMPLE, dst)
    env = dst / ".env"
    env.write_text("AWS_SECRET_ACCESS_KEY=abc\n")
    env.chmod(0o600)
    (dst / ".git").mkdir()
    (dst / ".git" / "config").write_text('[remote "o"]\nurl = https://x:ghp_TOKEN@github.com/a/b\n')
    secret = dst / "weights.bin"
    secret.write_bytes(b"\0" * 10)
    secret.chmod(0o600)
    tool = dst / "run.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (dst / "__pycache__").mkdir()
    (dst / "__pycache__" / "x.pyc").write_bytes(b"")
    return dst


def rels(files: tuple[model_files.ModelFile, ...]) -> set[str]:
    return {f.rel for f in files}


# --- what goes into an image (#17 item 11) ----------------------------------------------------


def test_dotfiles_and_caches_stay_out_unless_asked(model: Path) -> None:
    files = rels(model_files.select(model))
    assert {"MLmodel", "model.pkl", "weights.bin", "run.sh"} <= files
    assert not any(r.startswith(".") or "__pycache__" in r for r in files)
    with_dot = rels(model_files.select(model, include_dotfiles=True))
    assert {".env", ".git/config"} <= with_dot


def test_modes_are_kept_and_a_private_file_is_never_made_world_readable(
        model: Path, tmp_path: Path) -> None:
    files = {f.rel: f for f in model_files.select(model)}
    assert files["weights.bin"].mode == 0o640  # the server's group may read it, others not
    assert files["run.sh"].mode == 0o755 and files["MLmodel"].mode & 0o777 in (0o644, 0o640)
    out = tmp_path / "ctx"
    model_files.copy(files.values(), out)
    assert stat.S_IMODE(os.stat(out / "weights.bin").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(out / "run.sh").st_mode) == 0o755


@pytest.mark.parametrize("mode,expected", [(0o600, 0o640), (0o644, 0o644), (0o700, 0o750),
                                           (0o666, 0o644), (0o4755, 0o755), (0o400, 0o440)])
def test_image_mode(mode: int, expected: int) -> None:
    assert model_files.image_mode(mode) == expected


def test_symlink_out_of_the_model_directory_is_refused(model: Path, tmp_path: Path) -> None:
    outside = tmp_path / "id_rsa"
    outside.write_text("PRIVATE KEY")
    (model / "key").symlink_to(outside)
    with pytest.raises(ConfigError) as info:
        model_files.select(model)
    assert "key is a symlink to" in info.value.message and "outside" in info.value.message
    assert ".mldeployignore" in (info.value.hint or "")
    (model / ".mldeployignore").write_text("key\n")  # left out on purpose: fine
    assert "key" not in rels(model_files.select(model))


def test_symlink_inside_the_model_is_copied_as_the_file(model: Path, tmp_path: Path) -> None:
    (model / "alias.pkl").symlink_to(model / "model.pkl")
    (model / "sub").mkdir()
    (model / "sub" / "up").symlink_to(model, target_is_directory=True)  # a loop
    with pytest.raises(ConfigError, match="symlink loop"):
        model_files.select(model)
    (model / "sub" / "up").unlink()
    files = {f.rel: f for f in model_files.select(model)}
    out = tmp_path / "ctx"
    model_files.copy(files.values(), out)
    assert not (out / "alias.pkl").is_symlink()
    assert (out / "alias.pkl").read_bytes() == (model / "model.pkl").read_bytes()


def test_mldeployignore(model: Path) -> None:
    (model / "data").mkdir()
    (model / "data" / "train.csv").write_text("x")
    (model / "logs").mkdir()
    (model / "logs" / "a.txt").write_text("x")
    (model / "sub").mkdir()
    (model / "sub" / "data").mkdir()
    (model / "sub" / "data" / "keep.txt").write_text("x")
    for name in ("a.ckpt", "keep.ckpt", "sub/b.ckpt"):
        (model / name).write_text("x")
    (model / ".mldeployignore").write_text(
        "# checkpoints\n*.ckpt\n!keep.ckpt\n/data/\nlogs/\n\n")
    files = rels(model_files.select(model))
    assert "keep.ckpt" in files and "sub/data/keep.txt" in files and "MLmodel" in files
    assert not files & {"a.ckpt", "sub/b.ckpt", "data/train.csv", "logs/a.txt",
                        ".mldeployignore"}


def test_mldeployignore_subset_without_pathspec(model: Path, monkeypatch: pytest.MonkeyPatch,
                                                 ) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pathspec(name: str, *a: Any, **k: Any) -> Any:
        if name == "pathspec":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pathspec)
    (model / "a.ckpt").write_text("x")
    (model / "docs").mkdir()
    (model / "docs" / "x.md").write_text("x")
    (model / ".mldeployignore").write_text("*.ckpt\ndocs/\n")
    assert not rels(model_files.select(model)) & {"a.ckpt", "docs/x.md"}


def test_build_context_holds_only_the_model_files(model: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mldeploy.container.image import context as context_mod
    from mldeploy.container.image import wheelhouse

    house = tmp_path / "house"
    house.mkdir()
    (house / "flask-3.1.3-py3-none-any.whl").write_bytes(b"w")
    monkeypatch.setattr(wheelhouse, "download", lambda lines, **_k: wheelhouse.Wheelhouse(
        house, ("flask-3.1.3-py3-none-any.whl",), True))
    monkeypatch.setattr(wheelhouse, "mldeploy_wheel", lambda *a, **k: house / "flask-3.1.3-py3"
                        "-none-any.whl")
    monkeypatch.setattr(wheelhouse, "pip_wheel", lambda *a, **k: house / "flask-3.1.3-py3-"
                        "none-any.whl")
    out = tmp_path / "ctx"
    context_mod.generate_dockerfile(str(model), out)
    inside = {p.relative_to(out / "model").as_posix() for p in (out / "model").rglob("*")}
    assert ".env" not in inside and ".git" not in inside and "weights.bin" in inside
    assert stat.S_IMODE(os.stat(out / "model" / "weights.bin").st_mode) == 0o640
    assert "COPY --chown=0:10001 model/ /opt/ml/model/" in (out / "Dockerfile").read_text()
    # the base image set once for the machine
    monkeypatch.setenv("MLDEPLOY_BASE_IMAGE", "mldeploy-base:bookworm-v2")
    ctx = context_mod.generate_dockerfile(str(model), out)
    assert ctx.base_image == "mldeploy-base:bookworm-v2"
    assert "FROM mldeploy-base:bookworm-v2 AS deps" in ctx.dockerfile.read_text()


# --- one digest (#10) -------------------------------------------------------------------------


def test_content_digest_covers_model_runtime_options_and_version(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mldeploy

    base = images.content_digest(model, BuildOptions())
    copy = tmp_path / "elsewhere"
    shutil.copytree(model, copy, symlinks=True)
    assert images.content_digest(copy, BuildOptions()) == base  # content, not the path
    (copy / ".env").write_text("changed")  # not in the image: no new image
    assert images.content_digest(copy, BuildOptions()) == base
    changed = {
        "engine": images.content_digest(model, BuildOptions(engine=images.Engine.MLSERVER)),
        "base": images.content_digest(model, BuildOptions(base_image="b:1")),
        "platform": images.content_digest(model, BuildOptions(
            platform=images.Platform.ARM64)),
        "requirements": images.content_digest(model, BuildOptions(requirements=["x==1"])),
    }
    (copy / "weights.bin").chmod(0o644)
    changed["mode"] = images.content_digest(copy, BuildOptions())
    monkeypatch.setattr(mldeploy, "__version__", "99.0")
    changed["version"] = images.content_digest(model, BuildOptions())
    monkeypatch.setattr(images, "_runtime_digest", lambda: "other serving code")
    monkeypatch.setattr(mldeploy, "__version__", mldeploy.__version__)
    changed["runtime"] = images.content_digest(model, BuildOptions())
    assert base not in changed.values() and len(set(changed.values())) == len(changed)


def test_default_options_and_the_base_image_env_are_the_same_digest(
        model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = BuildOptions(engine=images.Engine.FLASK, env_manager=images.EnvManager.VIRTUALENV)
    assert images.content_digest(model, explicit) == images.content_digest(model, BuildOptions())
    monkeypatch.setenv("MLDEPLOY_BASE_IMAGE", "b:1")
    assert images.content_digest(model, BuildOptions()) == images.content_digest(
        model, BuildOptions(base_image="b:1"))


@pytest.mark.parametrize("target", ["local", "sagemaker", "kubernetes"])
def test_the_same_build_keys_on_every_target(target: str) -> None:
    from mldeploy.registry import get_target

    cls = get_target(target).config_class
    cfg = build_config(cls, {"build": {"engine": "mlserver", "base_image": "b:1",
                                       "platform": "linux/arm64", "requirements": "a==1,b",
                                       "include_dotfiles": "true"}})
    assert cfg.build.given() == {"engine": "mlserver", "base_image": "b:1",
                                 "platform": "linux/arm64", "requirements": ["a==1", "b"],
                                 "include_dotfiles": True}
    with pytest.raises(ConfigError, match="did you mean 'mlserver'"):
        build_config(cls, {"build": {"engine": "mlservr"}})
    with pytest.raises(ConfigError, match="unknown config key 'build.base'"):
        build_config(cls, {"build": {"base": "x"}})


def test_local_keeps_its_older_keys_as_aliases() -> None:
    from mldeploy.plugins.local.config import LocalConfig

    cfg = build_config(LocalConfig, {"base_image": "b:1", "engine": "mlserver"})
    assert cfg.build_options().given() == {"base_image": "b:1", "engine": "mlserver"}
    with pytest.raises(ConfigError, match="disagree"):
        build_config(LocalConfig, {"base_image": "b:1", "build": {"base_image": "b:2"}})


# --- one download, one builder seam (#10) -----------------------------------------------------


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every model download of materialize()/resolve_model_uri (models:/ URIs), faked."""
    import mldeploy.model_uri

    seen: list[Path] = []

    def fake_download(found: Any, dst: Path | None) -> Path:
        assert dst is not None, "a download without an owner (resolve_model_uri without dst)"
        target = Path(dst) / "model"
        shutil.copytree(EXAMPLE, target)
        seen.append(target)
        return target

    monkeypatch.setattr(mldeploy.model_uri, "_download", fake_download)
    return seen


def test_kubernetes_downloads_once_removes_it_and_digests_everything(
        downloads: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import mldeploy
    from mldeploy.plugins.kubernetes import _images
    from mldeploy.plugins.kubernetes.config import KubernetesConfig

    cfg = build_config(KubernetesConfig, {"registry": "registry.test/ml"})
    requests: list[images.ImageRequest] = []

    def builder(req: images.ImageRequest, log: Any) -> str:
        assert (req.model_dir / "MLmodel").is_file()  # lent while building
        requests.append(req)
        return req.reference

    model = _images.resolve(cfg, "churn", "models:/churn/3", build=builder, log=print)
    assert len(downloads) == 1 and not downloads[0].exists()
    assert model.image == requests[0].reference
    assert model.image.startswith("registry.test/ml/churn:")
    # an engine change or an mldeploy upgrade is a new image (it hashed the model files only)
    mls = build_config(KubernetesConfig, {"registry": "registry.test/ml",
                                          "build": {"engine": "mlserver"}})
    assert _images.resolve(mls, "churn", str(EXAMPLE), build=None, log=print).image != \
        _images.resolve(cfg, "churn", str(EXAMPLE), build=None, log=print).image
    before = _images.resolve(cfg, "churn", str(EXAMPLE), build=None, log=print).image
    monkeypatch.setattr(mldeploy, "__version__", "99.0")
    assert _images.resolve(cfg, "churn", str(EXAMPLE), build=None, log=print).image != before


@pytest.fixture
def local_engine() -> Any:
    from test_local_fakes import FakeEngine

    e = FakeEngine()
    yield e
    e.stop_all()


@pytest.fixture
def local_state(tmp_path: Path) -> Any:
    import signal

    from mldeploy.plugins.local.testing import gateway_pids

    d = tmp_path / "state"
    yield d
    for pid in gateway_pids(d):
        os.kill(pid, signal.SIGKILL)


def test_local_rollout_and_plan_download_once_and_remove_it(
        downloads: list[Path], local_engine: Any, local_state: Path) -> None:
    from mldeploy.plugins.local import LocalTarget
    from mldeploy.target import DeployMode

    target = LocalTarget({"state_dir": str(local_state)}, clients=local_engine)
    target.plan(DeployMode.CREATE, "ep", "models:/churn/3")
    assert len(downloads) == 1 and not downloads[0].exists()
    target.create("ep", "models:/churn/3")
    assert len(downloads) == 2 and not downloads[1].exists()
    assert local_engine.builds == 1
    target.delete("ep")


def test_local_endpoint_remembers_its_build_options(
        local_engine: Any, local_state: Path, tmp_path: Path) -> None:
    """#15 item 2: replace without -C base_image must not change the tag and rebuild."""
    from mldeploy.plugins.local import LocalTarget
    from mldeploy.target import DeployMode

    def target(**cfg: Any) -> LocalTarget:
        return LocalTarget({"state_dir": str(local_state), **cfg}, clients=local_engine)

    model = tmp_path / "m"
    shutil.copytree(EXAMPLE, model)
    created = target(base_image="base:1", engine="mlserver", memory="512m").create(
        "ep", str(model))
    assert local_engine.builds == 1
    assert created.details["build"]["base_image"] == "base:1"
    first = local_engine.requests[0]
    assert first.options.effective()["engine"] == "mlserver"
    plan = target().plan(DeployMode.REPLACE, "ep", str(model))
    (image,) = [c for c in plan.changes if c.resource.kind == "image"]
    assert "kept from the endpoint: base_image, engine" in image.detail
    assert image.resource.id == first.reference  # the same tag: nothing to build
    (container,) = [c for c in plan.changes if c.resource.kind == "container" and
                    c.action.value == "create"]
    assert "memory=512m" in container.detail and "kept from the endpoint: memory" in \
        container.detail
    target().replace("ep", str(model))
    assert local_engine.builds == 1  # the remembered options: same image, no rebuild
    target(build={"base_image": "base:2"}).replace("ep", str(model))
    assert local_engine.builds == 2
    assert local_engine.requests[-1].options.effective()["base_image"] == "base:2"
    assert local_engine.requests[-1].options.effective()["engine"] == "mlserver"  # still kept
    assert target().get("ep").details["build"]["base_image"] == "base:2"
    target().delete("ep")


# --- the base image offline (#15 item 1) ------------------------------------------------------


class _Images:
    def __init__(self, present: set[str]) -> None:
        self.present, self.pulled = present, []

    def get(self, ref: str) -> Any:
        from docker.errors import ImageNotFound

        if ref not in self.present:
            raise ImageNotFound(ref)
        return object()

    def pull(self, repository: str, tag: str) -> None:
        self.pulled.append(f"{repository}:{tag}")
        self.present.add(f"{repository}:{tag}")


class _Client:
    def __init__(self, present: set[str]) -> None:
        self.images = _Images(present)


def test_a_missing_base_stops_before_the_build_with_the_offline_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mldeploy.container.image import build as build_mod

    client = _Client(set())
    monkeypatch.setattr(build_mod, "docker_client", lambda: client)

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the context was assembled for a base that is not there")

    monkeypatch.setattr(build_mod, "assemble_facts", never)
    monkeypatch.setattr(build_mod, "run_build", never)
    for kwargs in ({"base_image": "no-such-base:1"}, {}):  # explicit, and python:3.11-slim
        with pytest.raises(BuildError) as info:
            build_mod.build_docker(str(EXAMPLE), "x:1", **kwargs)
        err = info.value
        assert "is not on this Docker engine" in err.message
        assert "scripts/build-base-image.sh" in err.hint and "MLDEPLOY_BASE_IMAGE" in err.hint
    assert "python:3.11-slim" in err.message
    assert client.images.pulled == []  # never a pull unless asked
    monkeypatch.setenv("MLDEPLOY_BASE_IMAGE", "offline-base:1")
    with pytest.raises(BuildError, match="offline-base:1 is not on this Docker engine"):
        build_mod.build_docker(str(EXAMPLE), "x:1")


def test_pull_is_asked_for_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    from mldeploy.container.image import build as build_mod

    client = _Client(set())
    said: list[str] = []
    build_mod.ensure_base(client, "python:3.11-slim", pull=True, log=said.append)
    assert said == ["pulling python:3.11-slim"] and client.images.pulled == ["python:3.11-slim"]
    build_mod.ensure_base(client, "python:3.11-slim", pull=False, log=said.append)  # present
    assert len(said) == 1


# --- traps around images (#15 item 5) ---------------------------------------------------------


def test_an_mlmodel_with_non_string_fields_builds_and_has_a_version(
        tmp_path: Path) -> None:
    import orjson

    from mldeploy.container.image.requirements import read_model
    from mldeploy.container.loader import load_model

    model = tmp_path / "m"
    shutil.copytree(EXAMPLE, model)
    text = (model / "MLmodel").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("model_uuid:",
                                                                   "mlflow_version:"))]
    big = 12345678901234567890123456789012  # YAML reads an all-digit uuid as an int
    (model / "MLmodel").write_text("\n".join([*lines, f"model_uuid: {big}",
                                              "mlflow_version: 3.1"]) + "\n")
    facts = read_model(model)
    assert facts.model_uuid == str(big) and facts.mlflow_version == "3.1"
    info = load_model(str(model)).info
    assert info["model_uuid"] == str(big)
    assert orjson.loads(orjson.dumps({"model": info}))["model"]["model_uuid"] == str(big)


def test_a_missing_module_says_to_add_a_requirement() -> None:
    from mldeploy.container.loader import load_failure_hint

    try:
        try:
            raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
        except ModuleNotFoundError as inner:
            raise RuntimeError("could not load the model") from inner
    except RuntimeError as exc:
        hint = load_failure_hint(exc)
    assert hint and "--requirement scikit-learn" in hint and "build-docker -m" in hint
    assert load_failure_hint(ValueError("x")) is None


def test_generic_build_says_to_add_the_models_library(monkeypatch: pytest.MonkeyPatch) -> None:
    from mldeploy.container.image import build as build_mod

    said: list[str] = []
    monkeypatch.setattr(build_mod, "docker_client", lambda: _Client({"python:3.11-slim"}))
    monkeypatch.setattr(build_mod, "choose_base", lambda *a: ("3.11", "python:3.11-slim"))

    def stop(*_a: Any, **_k: Any) -> Any:
        raise BuildError("stop here")

    monkeypatch.setattr(build_mod, "assemble_facts", stop)
    with pytest.raises(BuildError):
        build_mod.build_docker(None, "generic:1", log=said.append)
    assert any("--requirement scikit-learn" in s for s in said)


def test_serve_on_an_address_that_is_not_this_machines_exits_2() -> None:
    from mldeploy.container.engines import run
    from mldeploy.container.settings import ServerSettings
    from mldeploy.testing.aws import free_port

    # TEST-NET-3: never this machine's, and binding sends nothing anywhere
    settings = ServerSettings.resolve(model_uri=str(EXAMPLE), host="203.0.113.9",
                                      port=free_port())
    assert run(settings) == 2


def test_a_model_missing_a_module_logs_the_requirement_to_add(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from mldeploy.container import runtime as runtime_mod
    from mldeploy.container.settings import ServerSettings

    def load(_uri: str) -> Any:
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(runtime_mod, "load_model", load)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("mldeploy.container")
    logger.addHandler(handler)
    failed: list[Any] = []
    try:
        rt = runtime_mod.ModelRuntime(ServerSettings.resolve(model_uri=str(EXAMPLE)),
                                      on_failure=failed.append)
        rt.start().join(30)
    finally:
        logger.removeHandler(handler)
        rt.shutdown()
    assert failed and "ModuleNotFoundError" in (rt.failure or "")
    assert any("--requirement scikit-learn" in r.getMessage() for r in records)


def test_build_docker_downloads_once_and_removes_it(
        downloads: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from mldeploy.container.image import build as build_mod

    monkeypatch.setattr(build_mod, "docker_client", lambda: _Client({"python:3.11-slim"}))
    lent: list[bool] = []

    def assemble(opts: Any, work: Path, facts: Any, *_a: Any) -> Any:
        lent.append((facts.path / "MLmodel").is_file())
        raise BuildError("stop here")

    monkeypatch.setattr(build_mod, "assemble_facts", assemble)
    with pytest.raises(BuildError, match="stop here"):
        build_mod.build_docker("models:/churn/3", "x:1")
    assert lent == [True] and len(downloads) == 1 and not downloads[0].exists()


def test_serve_cli_on_an_address_that_is_not_this_machines_is_one_line_exit_2() -> None:
    """What the user saw: ``mldeploy serve --host 203.0.113.9`` was "internal error (HostError:
    ...)" with exit code 1."""
    import subprocess
    import sys

    from mldeploy.testing.aws import free_port

    for command in (["-m", "mldeploy.cli", "serve"], ["-m", "mldeploy.container", "serve"]):
        proc = subprocess.run([sys.executable, *command, "-m", str(EXAMPLE), "--host",
                               "203.0.113.9", "--port", str(free_port())],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        assert "not an address of this machine" in proc.stderr
