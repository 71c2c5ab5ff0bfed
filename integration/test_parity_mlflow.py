"""Differential suite: the same requests to `mlflow models serve --env-manager local` (the peer)
and to `mldeploy serve`, one server of each per model group (scripts/make_parity_models.py), over
real sockets on 127.0.0.1. Status, error_code and predictions must be equal, except for the cases
in ``parity_cases.DIFFERENCES`` (the one table of intended differences, also in the README), where
ours must give exactly what the table says and the peer must still answer otherwise.

Needs the full ``mlflow`` package with its scoring server (FastAPI + uvicorn) in this venv, as the
project's ``mlserver`` extra installs it; skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mldeploy.testing.aws import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_cases import _SECRET, CASES, DIFFERENCES  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUPS = sorted({group for group, *_ in CASES})
MLSERVER = importlib.util.find_spec("mlserver") is not None  # the project's mlserver extra
START_TIMEOUT = 240.0  # seconds for all servers, started together (the machine may be loaded)


@dataclass
class Answer:
    status: int
    error_code: str | None
    value: object  # predictions (JSON) or the body text
    raw: bytes
    content_type: str

    def key(self) -> tuple:
        return self.status, self.error_code, json.dumps(self.value, sort_keys=True)


def _answer(resp: requests.Response) -> Answer:
    ctype = resp.headers.get("Content-Type", "").split(";")[0]
    value: object = resp.text
    code = None
    if ctype == "application/json":
        value = json.loads(resp.text)  # json reads NaN / Infinity as MLflow writes them
        if resp.status_code != 200 and isinstance(value, dict):
            code = value.get("error_code")
            value = None
        elif isinstance(value, dict) and "predictions" in value:
            value = value["predictions"]
    elif resp.status_code != 200:
        value = None
    return Answer(resp.status_code, code, value, resp.content, ctype)


def _peer_missing() -> str | None:
    if not (BIN / "mlflow").exists():
        return f"no mlflow CLI beside {sys.executable}"
    for module in ("uvicorn", "fastapi", "sklearn"):
        if importlib.util.find_spec(module) is None:
            return f"`mlflow models serve` needs {module} (install the project's mlserver extra)"
    return None


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn`
    env.pop("PYTHONPATH", None)
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    reason = _peer_missing()
    if reason:
        pytest.skip(reason)
    models = tmp_path_factory.mktemp("parity-models")
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_parity_models.py"),
                           str(models)], capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        pytest.fail(f"make_parity_models.py failed: {made.stderr[-2000:]}")
    logs = tmp_path_factory.mktemp("parity-logs")
    procs: dict[tuple[str, str], tuple[subprocess.Popen, str, Path]] = {}
    try:
        for group in GROUPS:
            model = str(models / group)
            port = free_port()
            log = logs / f"peer-{group}.log"
            procs[(group, "peer")] = (_start(
                [str(BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"], log,
            ), f"http://127.0.0.1:{port}", log)
            port = free_port()
            log = logs / f"ours-{group}.log"
            procs[(group, "ours")] = (_start(
                [str(BIN / "mldeploy"), "serve", "-m", model, "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1"], log,
            ), f"http://127.0.0.1:{port}", log)
            if MLSERVER:
                port = free_port(3)  # MLServer also binds port+1 (gRPC) and port+2 (metrics)
                log = logs / f"mlserver-{group}.log"
                procs[(group, "mlserver")] = (_start(
                    [str(BIN / "mldeploy"), "serve", "-m", model, "--host", "127.0.0.1",
                     "--port", str(port), "--engine", "mlserver"], log,
                ), f"http://127.0.0.1:{port}", log)
        waiting = set(procs)
        deadline = time.monotonic() + START_TIMEOUT
        while waiting and time.monotonic() < deadline:
            for key in sorted(waiting):
                proc, url, log = procs[key]
                if proc.poll() is not None:
                    pytest.fail(f"{key} exited: {log.read_text(errors='replace')[-2000:]}")
                try:
                    if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                        waiting.discard(key)
                except requests.RequestException:
                    pass
            time.sleep(0.5)
        if waiting:
            pytest.fail(f"not ready within {START_TIMEOUT:g} s: {sorted(waiting)}")
        yield {key: url for key, (_, url, _) in procs.items()}
    finally:
        for proc, _, _ in procs.values():
            _stop(proc)


def _post(url: str, content_type: str, body: bytes, accept: str | None) -> Answer:
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return _answer(requests.post(f"{url}/invocations", data=body, headers=headers, timeout=60))


_ANSWERS: dict[str, tuple[Answer, Answer]] = {}


def _both(servers, group: str, cid: str) -> tuple[Answer, Answer]:
    key = f"{group}/{cid}"
    if key not in _ANSWERS:
        (_, _, ctype, body, accept), = [c for c in CASES if c[0] == group and c[1] == cid]
        _ANSWERS[key] = (_post(servers[(group, "ours")], ctype, body, accept),
                         _post(servers[(group, "peer")], ctype, body, accept))
    return _ANSWERS[key]


@pytest.mark.parametrize("group, cid", [(c[0], c[1]) for c in CASES],
                         ids=[f"{c[0]}/{c[1]}" for c in CASES])
def test_same_answer_as_mlflow_models_serve(servers, group, cid):
    ours, peer = _both(servers, group, cid)
    key = f"{group}/{cid}"
    assert _SECRET.encode() not in ours.raw  # messages name the column and the kind, not the value
    if key in DIFFERENCES:
        status, code, _why = DIFFERENCES[key]
        assert (ours.status, ours.error_code) == (status, code), ours.raw[:500]
        assert peer.key() != ours.key(), f"{key}: MLflow now answers as we do: drop the row"
        return
    assert ours.status == peer.status, (ours.raw[:500], peer.raw[:500])
    if peer.error_code is not None:  # MLflow's 415s are text/plain without a code
        assert ours.error_code == peer.error_code, (ours.raw[:500], peer.raw[:500])
    if ours.status == 200:
        assert ours.key() == peer.key(), (ours.raw[:500], peer.raw[:500])
    else:
        assert ours.content_type == "application/json"
        error = json.loads(ours.raw)
        assert set(error) == {"error_code", "message", "request_id"}
        assert not error["message"].startswith("Failed to enforce model input schema"), error


@pytest.mark.skipif(not MLSERVER, reason="--engine mlserver needs the project's mlserver extra")
@pytest.mark.parametrize("group, cid", [(c[0], c[1]) for c in CASES],
                         ids=[f"{c[0]}/{c[1]}" for c in CASES])
def test_mlserver_engine_answers_as_the_flask_engine(servers, group, cid):
    """The same protocol code behind MLServer: every case, byte for byte what matters (status,
    error_code, predictions, media type), so the table above holds for both engines."""
    ours, _ = _both(servers, group, cid)
    (_, _, ctype, body, accept), = [c for c in CASES if c[0] == group and c[1] == cid]
    other = _post(servers[(group, "mlserver")], ctype, body, accept)
    assert other.key() == ours.key(), (other.raw[:500], ours.raw[:500])
    assert other.content_type == ours.content_type
    assert _SECRET.encode() not in other.raw


# Where we accept what MLflow refuses, our answer must equal MLflow's answer to the same data
# sent in a form MLflow takes.
_EQUIVALENT = {
    "classifier/csv_headerless": "classifier/split",
    "classifier/jsonlines_records": "classifier/split",
    "classifier/azure_input_data": "classifier/records",
    "numpy/csv": "numpy/split_int_columns",
    "tensor/azure_named_tensors": "tensor/inputs",
}


@pytest.mark.parametrize("case, like", sorted(_EQUIVALENT.items()))
def test_extra_formats_answer_as_mlflow_does_for_the_standard_form(servers, case, like):
    ours, _ = _both(servers, *case.split("/"))
    _, peer = _both(servers, *like.split("/"))
    assert peer.status == 200 and ours.key() == peer.key()


def test_accept_csv_and_jsonlines_one_line_per_row(servers):
    _, peer = _both(servers, "classifier", "split")
    csv_answer, _ = _both(servers, "classifier", "accept_csv")
    assert csv_answer.content_type == "text/csv"
    assert csv_answer.raw.decode().splitlines() == [str(p) for p in peer.value]
    lines, _ = _both(servers, "classifier", "accept_jsonlines")
    assert lines.content_type == "application/jsonlines"
    assert [json.loads(line) for line in lines.raw.decode().splitlines()] == peer.value


def readme_rows() -> list[str]:
    """The README's table of intended differences, as DIFFERENCES writes it."""
    return [f"| `{key}` | {status}{' ' + code if code else ''} | {why} |"
            for key, (status, code, why) in DIFFERENCES.items()]


def test_readme_lists_every_intended_difference():
    """The README's table and DIFFERENCES are the same rows, in the same order, nothing else."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    head = lines.index("  | case | ours | why |")
    table = []
    for line in lines[head + 2:]:
        if not line.strip():
            break
        table.append(line.strip())
    assert table == readme_rows()
