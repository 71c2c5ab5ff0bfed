"""resolve_model_uri against real MLflow stores: a file tracking store + registry in tmp_path,
S3 through moto, and HTTP servers on 127.0.0.1 (a closed port, a non-MLflow server)."""

from __future__ import annotations

import filecmp
import http.server
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mldeploy import example_model_path
from mldeploy.errors import (
    ModelNotFoundError,
    ModelUriError,
    NotAnMlflowModelError,
    TrackingServerError,
)
from mldeploy.model_uri import materialize, resolve_model_uri

EXAMPLE = Path(example_model_path())
HTTP_VARS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch):
    """No tracking/registry URI from the user's environment or from other tests."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_ALLOW_FILE_STORE",
        *HTTP_VARS,
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None, raising=False)
    monkeypatch.setattr(registry_utils, "_registry_uri", None, raising=False)


def assert_is_example(path: Path) -> None:
    assert path.is_dir() and path.is_absolute()
    for name in ("MLmodel", "model.pkl"):
        assert filecmp.cmp(path / name, EXAMPLE / name, shallow=False), name


def model_copy(tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / name))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A file tracking store with a run (artifacts: model/, notes.txt), registered model 'clf'
    (versions 1 and 2, alias champion -> 1) and an MLflow 3 logged model of the run."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # MLflow's file registry reads a model version through MlflowClient() with the *global*
    # tracking URI: unset, that is sqlite:///mlflow.db in the cwd (the repo). Point it here while
    # building; the tests themselves run with no tracking URI in the environment.
    with monkeypatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        experiment_id = client.create_experiment("exp")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifacts(run_id, str(EXAMPLE), "model")
        client.log_text(run_id, "hello", "notes.txt")
        client.create_registered_model("clf")
        for _ in range(2):
            client.create_model_version("clf", f"runs:/{run_id}/model", run_id=run_id)
        client.set_registered_model_alias("clf", "champion", "1")
        logged = client.create_logged_model(experiment_id, name="lm", source_run_id=run_id)
        client.log_model_artifacts(logged.model_id, str(EXAMPLE))
        client.set_terminated(run_id)
    return SimpleNamespace(uri=uri, run_id=run_id, model_id=logged.model_id, root=tmp_path)


def test_building_the_store_writes_nothing_into_the_cwd(tmp_path, monkeypatch, request):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # MLflow's implicit default store would be ./mlflow.db
    request.getfixturevalue("store")
    assert list(cwd.iterdir()) == []


def resolve_in(store, uri: str, dst: Path | None = None) -> Path:
    return resolve_model_uri(uri, dst=dst or store.root / "dl", tracking_uri=store.uri)


# --- local paths ------------------------------------------------------------------------------


def test_local_directory_is_returned_in_place(tmp_path):
    model = model_copy(tmp_path)
    assert resolve_model_uri(str(model), dst=tmp_path / "unused") == model.resolve()
    assert not (tmp_path / "unused").exists()


def test_path_to_the_mlmodel_file_means_its_directory(tmp_path):
    model = model_copy(tmp_path)
    assert resolve_model_uri(str(model / "MLmodel")) == model.resolve()


def test_file_uris_with_one_and_three_slashes_and_escapes(tmp_path):
    model = model_copy(tmp_path, "my model")
    assert resolve_model_uri(model.as_uri()) == model.resolve()  # file:///.../my%20model
    assert resolve_model_uri(f"file:{model}") == model.resolve()


def test_file_uri_with_a_host_is_refused_with_the_likely_intent(tmp_path):
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri("file://models/clf")
    assert "file:///models/clf" in err.value.hint


def test_missing_local_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model_uri(str(tmp_path / "nope"))


@pytest.mark.parametrize("uri", ["", "   "])
def test_empty_uri(uri):
    with pytest.raises(ModelUriError, match="empty"):
        resolve_model_uri(uri)


def test_directory_with_the_model_one_level_down_names_the_subdirectory(tmp_path):
    model_copy(tmp_path / "run", "model")
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri(str(tmp_path / "run"))
    assert str(tmp_path / "run" / "model") in err.value.hint


def test_run_directory_with_the_model_two_levels_down_names_it(tmp_path):
    model_copy(tmp_path / "run" / "artifacts", "clf")
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri((tmp_path / "run").as_uri())
    assert (tmp_path / "run").as_uri() + "/artifacts/clf" in err.value.hint


def test_directory_without_any_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri(str(tmp_path / "empty"))
    assert "save_model" in err.value.hint


def test_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"x")
    with pytest.raises(NotAnMlflowModelError, match="is a file"):
        resolve_model_uri(str(tmp_path / "model.pkl"))


# --- tracking store and registry ------------------------------------------------------------


def test_runs_uri_is_downloaded_into_dst(store):
    path = resolve_in(store, f"runs:/{store.run_id}/model", dst=store.root / "out")
    assert path.parent == (store.root / "out").resolve()
    assert_is_example(path)


def test_without_dst_a_fresh_temporary_directory_is_used(store):
    path = resolve_model_uri("models:/clf/1", tracking_uri=store.uri)
    try:
        assert_is_example(path)
        assert Path(tempfile.gettempdir()).resolve() in path.parents
        assert store.root.resolve() not in path.parents  # not a path inside the store
    finally:
        shutil.rmtree(path.parent if path.parent.name.startswith("mldeploy") else path)


@pytest.mark.parametrize(
    "uri", ["models:/clf/1", "models:/clf/2", "models:/clf@champion", "models:/clf/latest"]
)
def test_registered_model_forms(store, uri):
    assert_is_example(resolve_in(store, uri))


def test_mlflow3_logged_model_by_id_and_through_its_run(store):
    assert_is_example(resolve_in(store, f"models:/{store.model_id}", dst=store.root / "a"))
    assert_is_example(resolve_in(store, f"runs:/{store.run_id}/lm", dst=store.root / "b"))


def test_tracking_uri_comes_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    assert_is_example(resolve_model_uri("models:/clf@champion", dst=store.root / "a"))
    assert_is_example(resolve_model_uri(f"runs:/{store.run_id}/model", dst=store.root / "b"))


def test_resolved_model_loads_and_predicts(store):
    import mlflow.pyfunc
    import pandas as pd

    path = resolve_in(store, "models:/clf@champion")
    example = json.loads((path / "input_example.json").read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    assert len(mlflow.pyfunc.load_model(str(path)).predict(frame)) == len(frame)


@pytest.mark.parametrize(
    ("uri", "error", "message", "hint"),
    [
        ("runs:/0123456789abcdef0123456789abcdef/model", ModelNotFoundError, "no run", "run id"),
        ("runs:/{run}/nope", ModelNotFoundError, "no model at 'nope'", "model"),
        ("runs:/{run}", NotAnMlflowModelError, "names a run", "runs:/{run}/model"),
        ("runs:/{run}/notes.txt", NotAnMlflowModelError, "is a file", "MLmodel"),
        ("models:/nope/1", ModelNotFoundError, "no registered model named 'nope'", "name"),
        ("models:/clf/9", ModelNotFoundError, "no version 9", "versions: 1, 2"),
        ("models:/clf@nope", ModelNotFoundError, "no alias 'nope'", "aliases: champion"),
        ("models:/clf/1/extra", ModelNotFoundError, "no artifact 'extra'", "drop the path"),
        ("models:/clf", ModelNotFoundError, "no version", "models:/<name>/<version>"),
        ("models:/m-nope", ModelNotFoundError, "no logged model", "MLFLOW_TRACKING_URI"),
        ("models:/clf/Production", ModelNotFoundError, "stage 'Production'", "versions: 1, 2"),
        ("models:/clf/bogus", ModelUriError, "neither a version", "models:/<name>/latest"),
    ],
)
def test_registry_errors(store, uri, error, message, hint):
    uri = uri.format(run=store.run_id)
    with pytest.raises(error) as err:
        resolve_in(store, uri)
    assert type(err.value) is error
    assert message in err.value.message
    assert hint.format(run=store.run_id) in err.value.hint
    assert not (store.root / "dl").exists() or not any((store.root / "dl").iterdir())


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("runs:/", "names no run"),
        ("models:/", "no model name"),
        ("models:", "no model name"),
        ("models:/@champion", "no model name"),
        ("models:/clf@", "empty alias"),
    ],
)
def test_malformed_registry_uris_fail_before_any_lookup(uri, message):
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri(uri)  # no tracking URI configured: the shape is checked first
    assert type(err.value) is ModelUriError
    assert message in err.value.message and err.value.hint


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/clf/1"])
def test_registry_uri_without_a_configured_tracking_uri(uri):
    with pytest.raises(TrackingServerError) as err:
        resolve_model_uri(uri)
    assert "MLFLOW_TRACKING_URI" in err.value.hint


def test_refused_file_store_says_how_to_allow_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    (tmp_path / "fresh-store").mkdir()  # a URI no earlier test opened (MLflow caches stores)
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri("runs:/abc/model", tracking_uri=(tmp_path / "fresh-store").as_uri())
    if isinstance(err.value, ModelNotFoundError):
        pytest.skip("this MLflow version accepts file tracking stores")
    assert type(err.value) is TrackingServerError
    assert "MLFLOW_ALLOW_FILE_STORE" in err.value.hint


def test_unsupported_scheme(tmp_path):
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri("foo://bar/model", dst=tmp_path)
    assert "cannot read 'foo:' URIs like foo://bar/model" in err.value.message
    assert "s3://" in err.value.hint


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3:///models/clf", "names no bucket"),
        ("https://tok3n@example.invalid/models/clf", "not a URL of an MLflow server"),
    ],
)
def test_malformed_storage_uris(uri, message, tmp_path):
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri(uri, dst=tmp_path)
    assert type(err.value) is ModelUriError and message in err.value.message
    assert "tok3n" not in str(err.value)


def test_a_missing_optional_package_is_named(tmp_path):
    if importlib.util.find_spec("google.cloud") and importlib.util.find_spec(
        "google.cloud.storage"
    ):
        pytest.skip("google-cloud-storage is installed")
    with pytest.raises(ModelUriError) as err:
        resolve_model_uri("gs://some-bucket/models/clf", dst=tmp_path)
    assert "google-cloud-storage" in err.value.message and "pip install" in err.value.hint


def test_a_database_store_this_mlflow_cannot_open(tmp_path):
    if importlib.util.find_spec("sqlalchemy"):
        pytest.skip("SQLAlchemy is installed: MLflow can open sqlite stores")
    with pytest.raises(TrackingServerError) as err:
        resolve_model_uri("runs:/abc/model", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert "full mlflow" in err.value.hint
    assert not (tmp_path / "mlflow.db").exists()


# --- materialize: a download lives as long as the with block ---------------------------------


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch) -> Path:
    """An empty directory tempfile uses for this test (downloads land there)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_materialize_removes_the_download_when_the_block_exits(store, tmpdir_root):
    with materialize(f"runs:/{store.run_id}/model", tracking_uri=store.uri) as path:
        assert_is_example(path)
        (download,) = tmpdir_root.iterdir()
        assert download.name.startswith("mldeploy-model-") and download in path.parents
    assert list(tmpdir_root.iterdir()) == []
    with pytest.raises(SystemExit), materialize("models:/clf@champion", tracking_uri=store.uri):
        assert len(list(tmpdir_root.iterdir())) == 1
        raise SystemExit(0)  # how gunicorn's arbiter leaves on SIGTERM
    assert list(tmpdir_root.iterdir()) == []


def test_sigterm_during_the_download_exits_and_removes_it(store, tmpdir_root, monkeypatch):
    import signal

    import mldeploy.model_uri as mu

    real = mu._download

    def interrupted(target, dst):
        real(target, dst)  # a partial download is on disk when the signal arrives
        assert any(tmpdir_root.iterdir())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not interrupt the download")

    monkeypatch.setattr(mu, "_download", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        with materialize(f"runs:/{store.run_id}/model", tracking_uri=store.uri):
            raise AssertionError("the block must not run")
    assert info.value.code == 143
    assert list(tmpdir_root.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_materialize_removes_a_failed_download(store, tmpdir_root):
    with pytest.raises(ModelNotFoundError), materialize("models:/clf/9", tracking_uri=store.uri):
        pass
    with pytest.raises(NotAnMlflowModelError), materialize(
        f"runs:/{store.run_id}/notes.txt", tracking_uri=store.uri
    ):
        pass
    assert list(tmpdir_root.iterdir()) == []


def test_materialize_leaves_a_local_model_alone(tmp_path, tmpdir_root):
    model = model_copy(tmp_path)
    before = sorted(p.name for p in model.iterdir())
    with pytest.raises(RuntimeError), materialize(model.as_uri()) as path:
        assert path == model.resolve()
        raise RuntimeError("the server failed")
    assert sorted(p.name for p in model.iterdir()) == before
    assert list(tmpdir_root.iterdir()) == []  # nothing was downloaded


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_leaving_the_block_keeps_the_download(store, tmpdir_root):
    """gunicorn workers are forked inside the block and leave it through SystemExit."""
    child = False
    try:
        with materialize(f"runs:/{store.run_id}/model", tracking_uri=store.uri) as path:
            pid = os.fork()
            if pid == 0:
                child = True
                raise SystemExit(0)
            assert os.waitpid(pid, 0)[1] == 0
            assert_is_example(path)  # still there for the next worker
    finally:
        if child:
            os._exit(0)
    assert not path.exists()


# --- tracking servers over HTTP (127.0.0.1 only) ---------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/clf@champion"])
def test_unreachable_tracking_server_fails_fast_without_leaking_credentials(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own setting is kept
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(TrackingServerError) as err:
        resolve_model_uri(uri, tracking_uri=f"http://alice:s3cret@127.0.0.1:{port}")
    assert time.monotonic() - started < 8  # MLflow's own defaults retry for minutes
    assert f"127.0.0.1:{port}" in err.value.message and "MLFLOW_TRACKING_URI" in err.value.hint
    assert "s3cret" not in str(err.value) and "alice" not in str(err.value)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # bounds were temporary
    assert "MLFLOW_TRACKING_URI" not in os.environ  # so was the exported tracking URI


@pytest.fixture
def http_server():
    """Serve canned (status, body) answers on 127.0.0.1; ``delay`` seconds before answering."""
    state = SimpleNamespace(status=200, body=b"", delay=0.0, requests=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests += 1
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_tracking_server_refusing_credentials(http_server):
    http_server.status, http_server.body = 401, b"<html>Unauthorized</html>"
    with pytest.raises(TrackingServerError) as err:
        resolve_model_uri("models:/clf/1", tracking_uri=http_server.url)
    assert "refused" in err.value.message and "MLFLOW_TRACKING_USERNAME" in err.value.hint


def test_a_server_that_is_not_mlflow(http_server):
    http_server.status, http_server.body = 404, b"<html>Not Found</html>"
    with pytest.raises(TrackingServerError) as err:
        resolve_model_uri("runs:/abc/model", tracking_uri=http_server.url)
    assert "does not answer like an MLflow tracking server" in err.value.message


def test_a_tracking_server_that_never_answers_times_out(http_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    http_server.delay = 5
    started = time.monotonic()
    with pytest.raises(TrackingServerError, match="could not reach"):
        resolve_model_uri("runs:/abc/model", tracking_uri=http_server.url)
    assert time.monotonic() - started < 4 and http_server.requests == 1


# --- S3 through moto ------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 with bucket 'models-bkt' holding the example under models/clf/."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    fresh_boto_clients(monkeypatch)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="models-bkt")
        for file in EXAMPLE.iterdir():
            client.upload_file(str(file), "models-bkt", f"models/clf/{file.name}")
        yield SimpleNamespace(client=client)


def fresh_boto_clients(monkeypatch):
    """boto3's default session and MLflow's S3 client cache keep credentials across tests."""
    import boto3
    from mlflow.store.artifact import s3_artifact_repo

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    cache = getattr(s3_artifact_repo._cached_get_s3_client, "cache_clear", None)
    if cache:
        cache()


def test_s3_model_is_downloaded(s3, tmp_path):
    path = resolve_model_uri("s3://models-bkt/models/clf", dst=tmp_path)
    assert tmp_path.resolve() in path.parents
    assert_is_example(path)


def test_s3_prefix_above_the_model_names_the_model_prefix(s3, tmp_path):
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri("s3://models-bkt/models", dst=tmp_path)
    assert "s3://models-bkt/models/clf" in err.value.hint


def test_s3_bucket_root_is_refused_before_downloading_anything(s3, tmp_path):
    s3.client.put_object(Bucket="models-bkt", Key="data/big.bin", Body=b"x" * 1_000_000)
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri("s3://models-bkt", dst=tmp_path / "dl")
    assert "s3://models-bkt/models/clf" in err.value.hint
    assert not (tmp_path / "dl").exists()


def test_s3_mlmodel_object_points_at_its_prefix(s3, tmp_path):
    with pytest.raises(NotAnMlflowModelError) as err:
        resolve_model_uri("s3://models-bkt/models/clf/MLmodel", dst=tmp_path)
    assert "s3://models-bkt/models/clf" in err.value.hint


def test_s3_missing_key_says_how_to_look(s3, tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_uri("s3://models-bkt/models/nope", dst=tmp_path)
    assert "aws s3 ls s3://models-bkt/models/" in err.value.hint


def test_s3_missing_bucket(s3, tmp_path):
    with pytest.raises(ModelNotFoundError, match="bucket holding s3://no-such-bkt/.* does not"):
        resolve_model_uri("s3://no-such-bkt/models/clf", dst=tmp_path)


def test_s3_access_denied_and_rejected_credentials(s3, tmp_path, monkeypatch):
    from moto.core import set_initial_no_auth_action_count

    iam = __import__("boto3").client("iam")
    iam.create_user(UserName="no-rights")
    key = iam.create_access_key(UserName="no-rights")["AccessKey"]

    def resolve_as(key_id, secret):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        fresh_boto_clients(monkeypatch)
        with pytest.raises(ModelUriError) as err:
            set_initial_no_auth_action_count(0)(resolve_model_uri)(
                "s3://models-bkt/models/clf", dst=tmp_path
            )
        assert type(err.value) is ModelUriError
        return err.value

    denied = resolve_as(key["AccessKeyId"], key["SecretAccessKey"])
    assert "refused (AccessDenied)" in denied.message and "s3:GetObject" in denied.hint
    rejected = resolve_as("AKIANOTAREALKEY00000", "wrong")
    assert "refused (InvalidAccessKeyId)" in rejected.message
    assert "wrong" not in str(rejected) and "AKIANOTAREALKEY" not in str(rejected)


def test_runs_uri_with_artifacts_on_s3(s3, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("e", artifact_location="s3://models-bkt/mlruns")
    run_id = client.create_run(experiment).info.run_id
    client.log_artifacts(run_id, str(EXAMPLE), "model")
    assert_is_example(
        resolve_model_uri(f"runs:/{run_id}/model", dst=tmp_path / "a", tracking_uri=uri)
    )
    with pytest.raises(ModelNotFoundError, match="no model at 'nope'"):
        resolve_model_uri(f"runs:/{run_id}/nope", dst=tmp_path / "b", tracking_uri=uri)
