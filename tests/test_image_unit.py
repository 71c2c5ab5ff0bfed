"""Image builder without a Docker engine or network: Dockerfile, context, requirements, errors."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mldeploy import example_model_path
from mldeploy.container.image import context as context_mod
from mldeploy.container.image import dockerfile, requirements, wheelhouse
from mldeploy.container.image.build import _Steps
from mldeploy.container.image.options import ImageOptions, check_image_name
from mldeploy.container.image.push import parse_repository_uri
from mldeploy.errors import BuildError, ConfigError, NotAnMlflowModelError

EXAMPLE = Path(example_model_path())


def _render(model: bool = True, **kw: object) -> str:
    args: dict[str, object] = dict(
        base_image="python:3.11-slim", engine="flask", mldeploy_version="0.1.0",
        runtime_labels={"io.mldeploy.version": "0.1.0"},
        model_labels={"io.mldeploy.model.uuid": "abc"} if model else None,
    )
    args.update(kw)
    return dockerfile.render(**args)  # type: ignore[arg-type]


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_contract() -> None:
    text = _render()
    lines = text.splitlines()
    assert not any(line.startswith("# syntax") for line in lines)  # would make the build pull
    assert "FROM python:3.11-slim AS deps" in lines
    assert lines.count("FROM python:3.11-slim") == 1  # the final stage
    assert 'ENTRYPOINT ["/opt/mldeploy/venv/bin/python", "-m", "mldeploy.container"]' in lines
    assert lines[-1] == 'CMD ["serve"]'
    assert "USER 10001:10001" in lines
    assert 'com.amazonaws.sagemaker.capabilities.accept-bind-to-port="true"' in text
    assert "--no-index" in text and "MLDEPLOY_HOST=0.0.0.0" in text
    # wheelhouse and pip only in build stages: the final stage copies the venv, not them
    final = text[text.index("# --- the image ---"):]
    assert "wheelhouse" not in final and "tools/" not in final


def test_dockerfile_layer_order_dependencies_before_model() -> None:
    text = _render()
    venv = text.index("COPY --from=deps /opt/mldeploy/venv")
    app = text.index("COPY --from=app /opt/mldeploy/lib")
    model = text.index("COPY --chown=0:10001 model/ /opt/ml/model/")
    model_label = text.index("io.mldeploy.model.uuid")
    assert venv < app < model < model_label


def test_generic_dockerfile_has_no_model_copy() -> None:
    text = _render(model=False)
    assert " model/ /opt/ml/model/" not in text
    assert "mkdir -p /opt/ml/model" in text  # the mount point still exists


def test_dockerfile_label_values_are_quoted_literally() -> None:
    text = _render(extra_labels={"team": 'a "b" $HOME \\ c'})
    assert 'team="a \\"b\\" \\$HOME \\\\ c"' in text
    assert text.index('team="') > text.index(" model/ /opt/ml/model/")  # caller labels come last


@pytest.mark.parametrize("bad", ["python:3.11 slim", "img\nRUN rm -rf /", "", "a$b"])
def test_dockerfile_rejects_unsafe_base_image(bad: str) -> None:
    with pytest.raises(ValueError):
        _render(base_image=bad)


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"engine": "torchserve"}, "unknown engine"),
        ({"env_manager": "conda"}, "not supported"),
        ({"env_manager": "pipenv"}, "unknown env manager"),
        ({"platform": "windows/amd64"}, "unsupported platform"),
        ({"python_version": "3.11.7"}, "major.minor"),
        ({"name": "My Image"}, "invalid image name"),
    ],
)
def test_options_reject_bad_values_with_a_hint(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        ImageOptions(**kwargs)  # type: ignore[arg-type]
    assert needle in info.value.message or needle in (info.value.hint or "")
    assert info.value.hint


@pytest.mark.parametrize(
    "name", ["m", "my-model:1", "127.0.0.1:5000/a/b:v1.2", "123.dkr.ecr.us-east-1.amazonaws.com/x"]
)
def test_valid_image_names(name: str) -> None:
    assert check_image_name(name) == name


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLDEPLOY_CACHE_DIR", str(tmp_path / "c"))
    assert ImageOptions().cache_path() == tmp_path / "c"
    assert ImageOptions(cache_dir=str(tmp_path / "d")).cache_path() == tmp_path / "d"


# --- requirements -----------------------------------------------------------------------------


def test_read_example_model() -> None:
    facts = requirements.read_model(EXAMPLE)
    assert facts.python_version == "3.11.7"
    assert facts.source == "python_env.yaml"
    assert facts.flavors == ("sklearn",)
    assert "scikit-learn==1.9.1" in facts.requirement_lines
    assert "mlflow==3.17.2" in facts.requirement_lines


def test_read_model_without_mlmodel(tmp_path: Path) -> None:
    with pytest.raises(NotAnMlflowModelError):
        requirements.read_model(tmp_path)


def _model(tmp_path: Path, reqs: str | None = None, conda: str | None = None) -> Path:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    python_version: "
        "3.10.4\nmlflow_version: 2.9.0\n", encoding="utf-8")
    if reqs is not None:
        (tmp_path / "requirements.txt").write_text(reqs, encoding="utf-8")
    if conda is not None:
        (tmp_path / "conda.yaml").write_text(conda, encoding="utf-8")
    return tmp_path


def test_mlflow_becomes_mlflow_skinny_at_the_same_version() -> None:
    resolved = requirements.resolve(requirements.read_model(EXAMPLE), engine="flask")
    assert "mlflow-skinny==3.17.2" in resolved.lines
    assert not any(line.startswith("mlflow==") for line in resolved.lines)
    assert any("mlflow-skinny==3.17.2" in note for note in resolved.notes)
    # mldeploy's own runtime requirements are always there
    assert any(line.startswith("gunicorn") for line in resolved.lines)
    assert any(line.startswith("flask") for line in resolved.lines)


def test_old_mlflow_pin_yields_to_the_runtime_range(tmp_path: Path) -> None:
    model = _model(tmp_path, "mlflow[extras]==2.9.0\n# comment\n\nscikit-learn==1.3.2  # pinned\n")
    resolved = requirements.resolve(requirements.read_model(model), engine="flask")
    mlflow_lines = [ln for ln in resolved.lines if ln.startswith("mlflow")]
    assert "mlflow-skinny==2.9.0" not in mlflow_lines
    # the runtime's own range (a lower bound, and since errcli's compat module an upper one)
    assert any(ln.startswith("mlflow-skinny") and ">=2.16" in ln for ln in mlflow_lines)
    assert any("2.9.0" in note and "older" in note for note in resolved.notes)
    assert "scikit-learn==1.3.2" in resolved.lines


def test_mldeploy_requirement_is_dropped(tmp_path: Path) -> None:
    model = _model(tmp_path, "mldeploy==0.0.1\npandas\n")
    resolved = requirements.resolve(requirements.read_model(model), engine="flask")
    assert "mldeploy==0.0.1" not in resolved.lines
    assert any("mldeploy" in note for note in resolved.notes)


def test_mlserver_engine_adds_its_extra() -> None:
    flask = requirements.mldeploy_requirements("flask")
    mls = requirements.mldeploy_requirements("mlserver")
    assert not any(r.startswith("mlserver") for r in flask)
    assert any(r.startswith("mlserver==") for r in mls)
    assert any(r.startswith("uvloop==0.21.0") for r in mls)


def test_env_manager_local_pins_installed_versions(tmp_path: Path) -> None:
    import pandas

    model = _model(tmp_path, "pandas==1.0.0\nnot-installed-pkg-xyz==1.0\n")
    resolved = requirements.resolve(requirements.read_model(model), engine="flask",
                                    env_manager="local")
    assert f"pandas=={pandas.__version__}" in resolved.lines
    assert "not-installed-pkg-xyz==1.0" in resolved.lines


@pytest.mark.parametrize(
    ("line", "needle"),
    [("-e git+https://example.invalid/x.git#egg=x", "editable"), ("pandas>=>1", "parse")],
)
def test_unusable_requirement_lines_fail_clearly(tmp_path: Path, line: str, needle: str) -> None:
    model = _model(tmp_path, line + "\n")
    with pytest.raises(BuildError) as info:
        requirements.resolve(requirements.read_model(model), engine="flask")
    assert needle in info.value.message and info.value.hint


def test_requirement_include_outside_the_model_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", "-r ../../etc/passwd\n") if (tmp_path / "m").mkdir() is None \
        else None
    with pytest.raises(BuildError, match="not a file in the model"):
        requirements.read_model(model)  # type: ignore[arg-type]


def test_nested_requirement_files_and_conda_fallback(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    model = _model(tmp_path / "a", "-r more.txt\nnumpy\n")
    (model / "more.txt").write_text("scipy==1.0\n", encoding="utf-8")
    assert requirements.read_model(model).requirement_lines == ("scipy==1.0", "numpy")

    (tmp_path / "b").mkdir()
    model = _model(tmp_path / "b", conda="dependencies:\n- python=3.10\n- pip:\n  - joblib==1.3\n")
    facts = requirements.read_model(model)
    assert facts.requirement_lines == ("joblib==1.3",) and facts.source == "conda.yaml"

    (tmp_path / "c").mkdir()
    facts = requirements.read_model(_model(tmp_path / "c"))
    resolved = requirements.resolve(facts, engine="flask")
    assert any("lists no requirements" in note for note in resolved.notes)


def test_pins_from_wheel_names() -> None:
    pins = requirements.pinned_from_wheels([
        "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.whl",
        "Flask-3.1.3-py3-none-any.whl",
    ])
    assert pins == ("flask==3.1.3", "scikit-learn==1.9.1")


# --- wheelhouse and its errors ----------------------------------------------------------------


def test_platform_tags_cover_glibc_range() -> None:
    tags = wheelhouse.platform_tags("x86_64", (2, 36))
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags


def test_scrub_removes_url_credentials() -> None:
    text = "Looking in indexes: https://alice:s3cret@pypi.corp.example/simple"
    assert "s3cret" not in wheelhouse.scrub(text) and "alice" not in wheelhouse.scrub(text)
    assert "https://***@pypi.corp.example/simple" in wheelhouse.scrub(text)


def test_pip_failure_missing_wheel() -> None:
    out = ("Looking in indexes: https://u:p4ss@idx.example/simple\n"
           "ERROR: Could not find a version that satisfies the requirement nosuchpkg==9.9 "
           "(from versions: none)\nERROR: No matching distribution found for nosuchpkg==9.9\n")
    err = wheelhouse.explain_pip_failure(out, "3.11", "x86_64")
    assert "nosuchpkg==9.9" in err.message and "CPython 3.11" in err.message
    assert "p4ss" not in str(err) and "Traceback" not in str(err)
    assert err.hint and "nosuchpkg" in err.hint


def test_pip_failure_conflict_names_both_sides() -> None:
    out = ("ERROR: Cannot install pandas==1.5.3 and mldeploy because these package versions "
           "have conflicting dependencies.\n\nThe conflict is caused by:\n"
           "    The user requested pandas==1.5.3\n    mldeploy 0.1.0 depends on pandas>=2.0\n\n"
           "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n")
    err = wheelhouse.explain_pip_failure(out, "3.11", "x86_64")
    assert "conflict" in err.message and "pandas>=2.0" in err.message
    assert "requirements.txt" in (err.hint or "")


def test_pip_failure_network() -> None:
    out = "WARNING: Retrying ... NewConnectionError('<urllib3...>: Failed')\n"
    err = wheelhouse.explain_pip_failure(out, "3.11", "x86_64")
    assert "cannot reach the package index" in err.message


def test_cached_wheelhouse_is_reused_without_pip(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_pip(args: list[str], *, timeout: float) -> object:
        calls.append(args)
        dest = Path(args[args.index("-d") + 1])
        (dest / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"x")

        class P:
            returncode, stdout, stderr = 0, "", ""
        return P()

    monkeypatch.setattr(wheelhouse, "_run_pip", fake_pip)
    kw = dict(python_version="3.11", arch="x86_64", glibc=(2, 36), cache_dir=tmp_path)
    first = wheelhouse.download(("six",), **kw)  # type: ignore[arg-type]
    second = wheelhouse.download(("six",), **kw)  # type: ignore[arg-type]
    assert len(calls) == 1 and not first.cached and second.cached
    assert second.wheels == ("six-1.16.0-py2.py3-none-any.whl",)
    args = calls[0]
    assert "--only-binary=:all:" in args and args[args.index("--python-version") + 1] == "3.11"
    third = wheelhouse.download(("six", "other"), **kw)  # type: ignore[arg-type]
    assert not third.cached and len(calls) == 2  # another input, another wheelhouse


def test_failed_download_leaves_no_cache_entry(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    class P:
        returncode, stdout = 1, ""
        stderr = "ERROR: No matching distribution found for nope==1\n"

    monkeypatch.setattr(wheelhouse, "_run_pip", lambda args, timeout: P())
    with pytest.raises(BuildError, match="nope==1"):
        wheelhouse.download(("nope==1",), python_version="3.11", arch="x86_64", glibc=(2, 36),
                            cache_dir=tmp_path)
    assert list((tmp_path / "wheelhouses").iterdir()) == []


# --- context ----------------------------------------------------------------------------------


@pytest.fixture
def offline_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    """Replace pip with fakes: records the requirement lines each download was asked for."""
    asked: list[tuple[str, ...]] = []
    house = tmp_path / "house"
    house.mkdir()
    for name in ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl",
                 "flask-3.1.3-py3-none-any.whl"):
        (house / name).write_bytes(b"wheel")
    own = tmp_path / "mldeploy-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(own, "w") as zf:
        zf.writestr("mldeploy/__init__.py", "")
    pip = tmp_path / "pip-26.0-py3-none-any.whl"
    pip.write_bytes(b"pip")

    def fake_download(lines: tuple[str, ...], **_kw: object) -> wheelhouse.Wheelhouse:
        asked.append(lines)
        return wheelhouse.Wheelhouse(house, tuple(sorted(p.name for p in house.iterdir())), True)

    monkeypatch.setattr(wheelhouse, "download", fake_download)
    monkeypatch.setattr(wheelhouse, "mldeploy_wheel", lambda *a, **k: own)
    monkeypatch.setattr(wheelhouse, "pip_wheel", lambda *a, **k: pip)
    return asked


def test_context_contents(offline_wheels: list[tuple[str, ...]], tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    ctx = context_mod.generate_dockerfile(str(EXAMPLE), out, labels=(("team", "ml"),))
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert {"Dockerfile", "requirements.lock", "dist/mldeploy-0.1.0-py3-none-any.whl",
            "tools/pip-26.0-py3-none-any.whl", "model/MLmodel", "model/model.pkl",
            "wheelhouse/flask-3.1.3-py3-none-any.whl"} <= names
    assert (out / "requirements.lock").read_text().split() == ["flask==3.1.3", "numpy==2.4.6"]
    assert ctx.python_version == "3.11" and ctx.base_image == "python:3.11-slim"
    assert ctx.labels["io.mldeploy.model.uuid"] == "30e982e046a34c74a08fa49259caf6d9"
    assert ctx.labels["team"] == "ml" and ctx.has_model
    assert "mlflow-skinny==3.17.2" in offline_wheels[0]
    mode = stat.S_IMODE(os.stat(out / "model" / "model.pkl").st_mode)
    assert mode & 0o004  # readable by the image's non-root user
    assert "FROM python:3.11-slim AS deps" in ctx.dockerfile.read_text()


def test_generic_context_and_explicit_python(offline_wheels: list[tuple[str, ...]],
                                            tmp_path: Path) -> None:
    ctx = context_mod.generate_dockerfile(None, tmp_path / "g", python_version="3.12",
                                          base_image="my/base:1")
    assert not (tmp_path / "g" / "model").exists() and not ctx.has_model
    assert ctx.python_version == "3.12" and ctx.base_image == "my/base:1"
    assert " model/ /opt/ml/model/" not in ctx.dockerfile.read_text()


def test_output_dir_must_be_empty_or_generated(offline_wheels: list[tuple[str, ...]],
                                              tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        context_mod.generate_dockerfile(str(EXAMPLE), busy)
    assert (busy / "notes.txt").read_text() == "mine"
    again = tmp_path / "again"
    context_mod.generate_dockerfile(str(EXAMPLE), again)
    (again / "stale.txt").write_text("old")
    context_mod.generate_dockerfile(str(EXAMPLE), again)  # replaces an earlier generated one
    assert not (again / "stale.txt").exists() and (again / "Dockerfile").is_file()


def test_model_python_differs_from_image_python_is_noted(offline_wheels: list[tuple[str, ...]],
                                                        tmp_path: Path) -> None:
    ctx = context_mod.generate_dockerfile(str(EXAMPLE), tmp_path / "x", python_version="3.12")
    assert any("3.11.7" in n and "3.12" in n for n in ctx.notes)


# --- build stream -----------------------------------------------------------------------------


def test_build_stream_reports_steps_and_fails_with_the_step_log() -> None:
    seen: list[str] = []
    steps = _Steps(seen.append)
    steps.feed({"stream": "Step 1/3 : FROM base AS deps\n"})
    steps.feed({"stream": " ---> Using cache\n"})
    steps.feed({"stream": "Step 2/3 : RUN pip install --index-url https://bob:hunter2@x/simple\n"})
    steps.feed({"stream": "Collecting things\n"})
    steps.feed({"stream": "ensurepip is not available\n"})
    with pytest.raises(BuildError) as info:
        steps.feed({"error": "The command returned a non-zero code: 1",
                    "errorDetail": {"message": "The command returned a non-zero code: 1"}})
    err = info.value
    assert "step 2/3" in err.message and "ensurepip is not available" in err.message
    assert "hunter2" not in str(err)
    assert "python3-venv" in (err.hint or "")
    assert seen and "step 1/3" in seen[0] and "(cached)" in seen[0]


def test_build_stream_collects_the_image_id() -> None:
    steps = _Steps(lambda _m: None)
    steps.feed({"stream": "Step 1/1 : FROM x\n"})
    steps.feed({"aux": {"ID": "sha256:abc"}})
    steps.finish()
    assert steps.image_id == "sha256:abc" and steps.total == 1


def test_build_without_an_engine_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from mldeploy.container.image import build_docker

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(BuildError) as info:
        build_docker(str(EXAMPLE), "x:1")
    assert "no Docker engine" in info.value.message and info.value.hint


# --- push -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/m:1",
         ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "m", "1")),
        ("127.0.0.1:5000/team/model", ("127.0.0.1:5000", "team/model", None)),
        ("localhost/x:v2", ("localhost", "x", "v2")),
    ],
)
def test_parse_repository_uri(uri: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_repository_uri(uri) == expected


@pytest.mark.parametrize("uri", ["model:1", "127.0.0.1:5000/Bad", "host.io/x:bad tag"])
def test_parse_repository_uri_rejects(uri: str) -> None:
    with pytest.raises(ConfigError):
        parse_repository_uri(uri)


def test_ecr_repository_created_once_and_token_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    import boto3

    from mldeploy.container.image import push

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with moto.mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        logged: list[str] = []
        assert push.ensure_repository(ecr, "team/model", create=True, log=logged.append)
        assert not push.ensure_repository(ecr, "team/model", create=True, log=logged.append)
        assert logged == ["created ECR repository team/model"]
        with pytest.raises(BuildError, match="does not exist"):
            push.ensure_repository(ecr, "other", create=False, log=logged.append)
        creds = push._credentials(ecr)
        assert creds["username"] == "AWS" and creds["password"]


# --- CLI --------------------------------------------------------------------------------------


def test_cli_generate_dockerfile(offline_wheels: list[tuple[str, ...]], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mldeploy._cli_image import generate_dockerfile

    out = tmp_path / "cli"
    result = CliRunner().invoke(
        generate_dockerfile,
        ["-m", str(EXAMPLE), "-d", str(out), "--label", "a=b", "--python-version", "3.11"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["python_version"] == "3.11" and data["labels"]["a"] == "b"
    assert (out / "Dockerfile").is_file()


def test_cli_commands_are_click_commands_with_their_names() -> None:
    import click

    from mldeploy import _cli_image

    names = {getattr(_cli_image, n).name for n in ("build_docker", "generate_dockerfile", "push")}
    assert names == {"build-docker", "generate-dockerfile", "push"}
    assert all(isinstance(getattr(_cli_image, n), click.Command) for n in _cli_image.__all__)


def test_cli_bad_label_is_a_usage_error(offline_wheels: list[tuple[str, ...]],
                                        tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mldeploy._cli_image import generate_dockerfile
    from mldeploy.errors import UsageError

    result = CliRunner().invoke(generate_dockerfile, ["-d", str(tmp_path / "z"), "--label", "x"])
    assert isinstance(result.exception, UsageError)


def test_importing_the_package_does_nothing() -> None:
    import subprocess
    import sys

    code = ("import sys, mldeploy.container.image as m; "
            "print(any(k.startswith('mldeploy.container.image.') for k in sys.modules), "
            "'docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_remote_model_is_downloaded_into_a_temporary_dir_and_removed(
        offline_wheels: list[tuple[str, ...]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import mldeploy.model_uri

    seen: list[Path] = []

    def fake_download(found: Any, dst: Path) -> Path:  # what materialize() downloads with
        assert found.uri == "models:/classifier/1"
        target = Path(dst) / "model"
        shutil.copytree(EXAMPLE, target)
        seen.append(target)
        return target

    monkeypatch.setattr(mldeploy.model_uri, "_download", fake_download)
    ctx = context_mod.generate_dockerfile("models:/classifier/1", tmp_path / "r")
    assert (tmp_path / "r" / "model" / "MLmodel").is_file() and ctx.has_model
    assert ctx.labels["io.mldeploy.model.uri"] == "models:/classifier/1"
    assert seen and not seen[0].exists()  # the download is gone, the context keeps its copy


def test_bare_source_fallback_lists_every_runtime_dependency_of_pyproject(monkeypatch):
    """Running from a bare source tree (no installed metadata) the image still gets every
    dependency pyproject.toml declares: the fallback list cannot drift from it."""
    import importlib.metadata
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    from mldeploy.container.image import requirements as reqs

    def missing(_name):
        raise importlib.metadata.PackageNotFoundError("mldeploy")

    monkeypatch.setattr(reqs.importlib.metadata, "requires", missing)
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    declared = {Requirement(r).name.lower().replace("_", "-")
                for r in project["project"]["dependencies"]}
    fallback = {Requirement(r).name.lower().replace("_", "-")
                for r in reqs.mldeploy_requirements("flask")}
    assert fallback == declared
