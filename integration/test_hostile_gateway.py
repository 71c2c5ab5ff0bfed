"""The local target's gateway against hostile clients, as real processes over 127.0.0.1.

Two gateway processes (endpoints ``ep`` and ``other``) in front of a real ``mldeploy serve`` of
the shipped example model, plus a slow upstream in this process (variant ``slow``, weight 0,
reached with ``X-Amzn-SageMaker-Target-Variant``). Each attack is bounded in count and time;
while it runs a pinger measures ``GET /ping`` on the attacked gateway and on the other one (each
ping on a new connection), and every test asserts those pings all answered 200 with a p99 under
a generous 1 s. The measured p99s are printed (``-s``) and reported in the README's
reliability section. The gateways run with short timeouts (head 2 s, body 3 s, idle 3 s) so the
file stays under two minutes; the defaults are 10/60/15 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hostile_kit as kit
import pytest
from hostile_kit import ACCEPTED, PROBES

from mldeploy.plugins.local import _gateway_ctl as gw
from mldeploy.plugins.local._state import EndpointState, StateStore, VariantState
from mldeploy.testing.aws import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "src" / "mldeploy" / "examples" / "classifier"
MLDEPLOY = str(Path(sys.executable).with_name("mldeploy"))
BODY = json.dumps(json.loads((MODEL / "serving_input_example.json").read_text())).encode()
LIMITS = {"head_timeout": 2, "body_timeout": 3, "idle_timeout": 3}
P99_BOUND = 1.0
REPORT: dict[str, dict[str, float]] = {}


# -- the processes ---------------------------------------------------------------------------------


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.server.delay)  # type: ignore[attr-defined]
        out = b'{"predictions": ["slow"]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Iterator[int]:
    """A real ``mldeploy serve`` of the example model; its port."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with kit.serve_process([MLDEPLOY, "serve", "-m", str(MODEL), "--host", "127.0.0.1",
                            "--port", str(port), "--workers", "1"], port, log,
                           not_started=pytest.skip):
        yield port


@pytest.fixture(scope="module")
def slow() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    server.delay = 3.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Print the p99 table of this run at the end (``-s``; the README's figures come from it)."""
    yield
    if REPORT:
        print("\n| attack | /ping p99, attacked gateway | /ping p99, another endpoint |")
        print("|---|---:|---:|")
        for attack, p99s in REPORT.items():
            cells = [f"{p99s[n] * 1000:.0f} ms" if n in p99s else "-"
                     for n in ("ep", "other")]
            if "capped" in p99s:
                cells = [f"{p99s['capped'] * 1000:.0f} ms", "-"]
            print(f"| {attack} | {' | '.join(cells)} |")


@dataclasses.dataclass
class Gw:
    state: EndpointState
    store: StateStore

    @property
    def port(self) -> int:
        return self.state.port

    @property
    def pid(self) -> int:
        return self.state.gateway_pid

    def log(self) -> str:
        return self.store.log_path(self.state.name).read_text(errors="replace")

    def rss_kib(self) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def _state(name: str, upstream: int, slow_port: int, **limits: object) -> EndpointState:
    return EndpointState(
        name=name, generation=1, upstream_timeout=20.0, limits={**LIMITS, **limits},
        variants=(VariantState("primary", "m", "img", f"serve-{upstream}", upstream, 1.0),
                  VariantState("slow", "m", "img", f"slow-{slow_port}", slow_port, 0.0)))


def _start(tmp: Path, state: EndpointState) -> Gw:
    store = StateStore(tmp)
    store.save(state)
    port, pid = gw.start(state, store.path(state.name), store.log_path(state.name))
    state = dataclasses.replace(state, port=port, gateway_pid=pid)
    store.save(state)
    return Gw(state, store)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory, upstream, slow) -> Iterator[tuple[Gw, Gw]]:
    tmp = tmp_path_factory.mktemp("gw")
    made = [_start(tmp, _state(n, upstream, slow.server_address[1])) for n in ("ep", "other")]
    yield made[0], made[1]
    for g in made:
        gw.stop(g.state)


# -- raw HTTP --------------------------------------------------------------------------------------


_connect, _read_all, _ask, _status, _json_body, _wait_closed = (
    kit.connect, kit.read_all, kit.ask, kit.status, kit.json_body, kit.wait_closed)


def _post(path: str = "/invocations", body: bytes = BODY, extra: bytes = b"",
          close: bool = True) -> bytes:
    return kit.post(body, path, extra, close)


def Pinger(*targets: Gw) -> kit.Pinger:  # noqa: N802 (it stands for the class)
    """``GET /ping`` on each gateway every 50 ms from a thread, each on a new connection."""
    return kit.Pinger({g.state.name: g.port for g in targets}, REPORT, bound=P99_BOUND)


# -- slow and silent clients -----------------------------------------------------------------------


def test_silent_connections_are_closed_and_ping_keeps_answering(gateways):
    ep, other = gateways
    socks = [_connect(ep.port) for _ in range(500)]
    try:
        with Pinger(ep, other) as p:
            closed, got = _wait_closed(socks, LIMITS["head_timeout"] + 3)
        p.check("500 silent connections")
        assert closed == 500 and all(g == b"" for g in got)  # nothing asked: closed, no answer
    finally:
        for s in socks:
            s.close()


def test_slowloris_gets_408_after_the_head_timeout(gateways):
    ep, other = gateways
    socks = [_connect(ep.port) for _ in range(50)]
    try:
        started = time.monotonic()
        with Pinger(ep, other) as p:
            for s in socks:
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
            trickle_until = started + LIMITS["head_timeout"] + 1
            while time.monotonic() < trickle_until:
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b"X-a: b\r\n")
                time.sleep(0.3)
            closed, got = _wait_closed(socks, 3)
        p.check("50 slowloris connections")
        assert closed == 50
        assert all(_status(g) == 408 for g in got), {g[:40] for g in got}
        assert _json_body(got[0])["error_code"] == "REQUEST_TIMEOUT"
        assert time.monotonic() - started < LIMITS["head_timeout"] + 5
    finally:
        for s in socks:
            s.close()


def test_slow_bodies_get_408_after_the_body_timeout(gateways):
    ep, other = gateways
    socks = [_connect(ep.port) for _ in range(8)]
    try:
        with Pinger(ep, other) as p:
            for s in socks:
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            until = time.monotonic() + LIMITS["body_timeout"] + 1
            while time.monotonic() < until:
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b"{")
                time.sleep(0.5)
            closed, got = _wait_closed(socks, 3)
        p.check("8 slow bodies")
        assert closed == 8 and all(_status(g) == 408 for g in got)
    finally:
        for s in socks:
            s.close()


def test_an_idle_keep_alive_connection_is_closed(gateways):
    ep, _ = gateways
    with _connect(ep.port) as s:
        s.sendall(_post(close=False))
        time.sleep(0.5)
        first = s.recv(65536)
        assert _status(first) == 200 and b"Connection: close" not in first
        started = time.monotonic()
        closed, _ = _wait_closed([s], LIMITS["idle_timeout"] + 3)
        assert closed == 1 and time.monotonic() - started >= LIMITS["idle_timeout"] - 0.5


def test_1100_idle_connections_under_a_1024_file_limit_do_not_lock_clients_out(
        tmp_path, upstream, slow):
    """The gateway started with RLIMIT_NOFILE 1024:1024: it caps connections below what the
    limit allows and closes the longest idle one for a new client."""
    store = StateStore(tmp_path)
    state = _state("capped", upstream, slow.server_address[1], head_timeout=60,
                   idle_timeout=60)
    store.save(state)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with open(store.log_path("capped"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", gw.MODULE, "--state",
                                 str(store.path("capped")), "--foreground"],
                                stdout=subprocess.PIPE, stderr=log, preexec_fn=limit)
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line and line[0] == b"READY", store.log_path("capped").read_text()
        port = int(line[1])
        g = Gw(dataclasses.replace(state, port=port, gateway_pid=proc.pid), store)
        for _ in range(1100):
            socks.append(_connect(port))
        time.sleep(1)
        with Pinger(g) as p:
            for _ in range(20):
                reply = _ask(port, _post())
                assert _status(reply) == 200, reply[:200]
        p.check("1,100 idle connections, 1,024 open files")
        status = gw.status(g.state)
        assert status is not None
        assert status["connections"]["cap"] < 1024 and status["connections"]["evicted"] >= 76
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(20)


# -- memory ----------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_sent(gateways):
    ep, other = gateways
    with _connect(ep.port) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\n\r\n" % (64 * 1024 * 1024))
        reply = _read_all(s, 3)
    assert _status(reply) == 413 and b"Connection: close" in reply
    doc = _json_body(reply)
    assert doc["error_code"] == "REQUEST_TOO_LARGE" and doc["request_id"]
    assert str(6 * 1024 * 1024) in doc["message"]
    before = ep.rss_kib()
    with Pinger(ep, other) as p, _connect(ep.port) as s:  # a client that sends it anyway
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"0" * 65536)
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 64 * 1024 * 1024:
                s.sendall(chunk)
                sent += 65536
        reply = _read_all(s, 3)
    p.check("64 MiB chunked body")
    assert _status(reply) == 413
    assert ep.rss_kib() - before < 16 * 1024, "the body was not buffered"


def test_bytes_pumped_behind_a_slow_request_are_not_buffered(gateways):
    ep, other = gateways
    before = ep.rss_kib()
    pumped = 0
    with Pinger(ep, other) as p, _connect(ep.port, timeout=0.5) as s:
        s.sendall(_post(extra=b"X-Amzn-SageMaker-Target-Variant: slow\r\n", close=False))
        junk = _post(body=b"x" * 60000, close=False)
        until = time.monotonic() + 2.5
        while time.monotonic() < until and pumped < 300 * 1024 * 1024:
            try:
                pumped += s.send(junk)
            except TimeoutError:
                continue
        grown = ep.rss_kib() - before
    p.check("bytes pumped behind a slow request")
    assert pumped < 64 * 1024 * 1024, f"{pumped} bytes taken: reading never paused"
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"


# -- CPU -------------------------------------------------------------------------------------------


def test_12_mb_of_one_byte_chunks_do_not_stall_the_gateways(gateways):
    ep, other = gateways
    replies: list[bytes] = []

    def flood() -> None:
        with _connect(ep.port, timeout=10) as s:
            s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b"1\r\nx\r\n" * 10000
            with contextlib.suppress(OSError):
                for _ in range(12 * 1024 * 1024 // len(block)):
                    s.sendall(block)
            replies.append(_read_all(s, 3))

    started = time.monotonic()
    with Pinger(ep, other) as p:
        t = threading.Thread(target=flood)
        t.start()
        t.join(30)
    p.check("12 MB of 1-byte chunks")
    assert replies and _status(replies[0]) == 400, replies[:1]
    assert "chunks" in _json_body(replies[0])["message"]
    assert time.monotonic() - started < 30


# -- framing ---------------------------------------------------------------------------------------

# RFC 9112's framing probes: the same list as test_hostile_serve.py's (hostile_kit.PROBES)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_framing_probes_are_refused_and_nothing_behind_them_runs(gateways, probe):
    ep, _ = gateways
    reply = _ask(ep.port, PROBES[probe], limit=5)
    answers = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
    if probe in ACCEPTED:
        assert answers and answers[0] != b"400"
    else:
        assert answers and int(answers[0]) in (400, 413, 501), reply[:300]
        assert len(answers) == 1, f"a second request was answered: {reply[:600]!r}"
        doc = _json_body(reply)
        assert doc["error_code"] and doc["message"] and doc["request_id"]
    assert b"smuggled" not in reply.split(b"\r\n\r\n", 1)[0]


def test_pipelined_requests_are_answered_in_order(gateways):
    ep, _ = gateways
    raw = (_post(close=False) + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
           + b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = _ask(ep.port, raw)
    assert [int(c) for c in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)] == [200, 200, 404]


# -- request ids, half-close, methods --------------------------------------------------------------


@pytest.mark.parametrize("given", [b"abc\nSet-Cookie: evil=1", b"\xff\xfe-id", b"<script>",
                                   b"x" * 200, b"a b"])
def test_a_bad_request_id_is_replaced_and_never_echoed(gateways, given):
    ep, _ = gateways
    for path in ("/invocations", "/nowhere"):
        raw = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"X-Request-Id: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (path.encode(), given, len(BODY)) + BODY)
        reply = _ask(ep.port, raw)
        head = reply.split(b"\r\n\r\n", 1)[0]
        assert b"evil" not in head and b"script" not in head
        status = _status(reply)
        if b"\n" in given:  # h11 reads the bare LF as a line end: "Set-Cookie" is a header
            assert status in (200, 404, 400)  # ... of the request, never of the answer
        else:
            assert status == (200 if path == "/invocations" else 404), reply[:300]
            rid = re.search(rb"\r\nX-Request-Id: ([^\r\n]*)", head)
            assert rid and re.fullmatch(rb"[0-9a-f]{32}", rid.group(1)), head
    assert "evil" not in ep.log() and "script" not in ep.log()


def test_a_sane_request_id_goes_to_the_model_and_back(gateways):
    ep, _ = gateways
    reply = _ask(ep.port, _post(extra=b"X-Request-Id: probe-1.a:b\r\n"))
    assert _status(reply) == 200 and b"\r\nX-Request-Id: probe-1.a:b\r\n" in reply


def test_half_closed_clients_get_their_answer(gateways):
    ep, _ = gateways
    for _ in range(20):
        with _connect(ep.port) as s:
            s.sendall(_post(close=False))
            s.shutdown(socket.SHUT_WR)
            reply = _read_all(s, 10)
        assert _status(reply) == 200 and b"Connection: close" in reply
        assert b'"predictions"' in reply


def test_half_closed_clients_get_an_answer_that_comes_seconds_later(gateways, slow):
    """The client half-closes at once; the upstream answers after its 3 s delay: the gateway
    keeps the connection and writes the answer (five clients at the same time)."""
    ep, _ = gateways
    replies: list[bytes] = []

    def client() -> None:
        with _connect(ep.port, timeout=15) as s:
            s.sendall(_post(extra=b"X-Amzn-SageMaker-Target-Variant: slow\r\n", close=False))
            s.shutdown(socket.SHUT_WR)
            replies.append(_read_all(s, 15))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(replies) == 5
    assert all(_status(r) == 200 and b'"slow"' in r for r in replies), [r[:100] for r in replies]
    assert time.monotonic() - started >= slow.delay - 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"DELETE", b"TRACE", b"OPTIONS", b"PATCH",
                                    b"HEAD"])
def test_other_methods_on_the_invocation_routes_are_405(gateways, method):
    ep, _ = gateways
    for path in (b"/invocations", b"/endpoints/ep/invocations"):
        reply = _ask(ep.port, b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n" % (method, path))
        head, _, body = reply.partition(b"\r\n\r\n")
        assert _status(reply) == 405 and b"\r\nAllow: POST" in head, reply[:300]
        if method == b"HEAD":
            assert body == b"" and re.search(rb"Content-Length: [1-9]", head)
        else:
            doc = json.loads(body)
            assert doc["error_code"] == "METHOD_NOT_ALLOWED" and doc["request_id"]


def test_head_ping_has_no_body_and_the_connection_stays_usable(gateways):
    ep, _ = gateways
    reply = _ask(ep.port, b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert _status(first) == 200 and b"Content-Length: 2" in first
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"{}")


def test_the_listen_backlog_is_1024(gateways):
    ep, _ = gateways
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to read the backlog")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{ep.port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out and int(out[2]) == min(1024, int(Path("/proc/sys/net/core/somaxconn")
                                                .read_text())), out
