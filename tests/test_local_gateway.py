"""The local target's gateway process against in-process fake model servers on 127.0.0.1:
routing, weights, variant targeting, keep-alive, reload and drain, and the SageMaker runtime
API as boto3 sees it."""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import threading
import time
from collections import Counter

import pytest
from test_local_fakes import FakeModelServer

from mldeploy.errors import PortInUseError, TargetError
from mldeploy.plugins.local import _gateway_ctl as gw
from mldeploy.plugins.local._state import EndpointState, StateStore, VariantState

BODY = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}).encode()


@pytest.fixture
def servers():
    made: list[FakeModelServer] = []

    def make(answer: str, **kw) -> FakeModelServer:
        made.append(FakeModelServer(answer, **kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


class Gateway:
    """A started gateway process for a state with the given variants."""

    def __init__(self, tmp_path, variants: list[tuple[str, FakeModelServer, float]],
                 upstream_timeout: float = 10.0) -> None:
        self.store = StateStore(tmp_path / "state")
        self.state = EndpointState(name="ep", generation=1, upstream_timeout=upstream_timeout,
                                   variants=self._variants(variants))
        self.store.save(self.state)
        port, pid = gw.start(self.state, self.store.path("ep"), self.store.log_path("ep"))
        self.state = dataclasses.replace(self.state, port=port, gateway_pid=pid)
        self.store.save(self.state)
        self.url = self.state.url

    @staticmethod
    def _variants(variants):
        return tuple(VariantState(name, "m", "img", f"c-{name}-{srv.port}", srv.port, weight)
                     for name, srv, weight in variants)

    def set_routes(self, variants) -> dict:
        self.state = dataclasses.replace(self.state, generation=self.state.generation + 1,
                                         variants=self._variants(variants))
        self.store.save(self.state)
        return gw.reload(self.state)

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.state.port, timeout=20)

    def post(self, path="/invocations", body=BODY, headers=None, conn=None):
        own = conn is None
        conn = conn or self.conn()
        try:
            conn.request("POST", path, body=body,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            if own:
                conn.close()

    def stop(self) -> None:
        gw.stop(self.state)


@pytest.fixture
def gateway(tmp_path):
    made: list[Gateway] = []

    def start(*variants, **kw) -> Gateway:
        made.append(Gateway(tmp_path, list(variants), **kw))
        return made[-1]

    yield start
    for g in made:
        g.stop()


def _runtime(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"total_max_attempts": 1}))


def test_invocations_reach_the_model_with_headers_both_ways(gateway, servers):
    a = servers("A")
    g = gateway(("primary", a, 1.0))
    status, headers, body = g.post(headers={"X-Amzn-SageMaker-Custom-Attributes": "trace=1",
                                            "X-Request-Id": "rid-7"})
    assert status == 200 and json.loads(body) == {"predictions": ["A", "A"]}
    assert headers["Content-Type"] == "application/json"
    assert headers["x-Amzn-Invoked-Production-Variant"] == "primary"
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "echo:trace=1"
    assert headers["X-Request-Id"] == "rid-7"
    sent_headers, sent_body = a.requests[-1]
    assert sent_body == BODY and sent_headers["content-type"] == "application/json"
    assert sent_headers["x-request-id"] == "rid-7"


def test_weights_split_traffic_exactly_over_1000_requests(gateway, servers):
    a, b, c = servers("A"), servers("B"), servers("C")
    g = gateway(("blue", a, 3.0), ("green", b, 1.0), ("off", c, 0.0))
    seen = Counter()
    conn = g.conn()
    for _ in range(1000):
        status, headers, body = g.post(conn=conn)
        assert status == 200
        variant = headers["x-Amzn-Invoked-Production-Variant"]
        seen[(variant, json.loads(body)["predictions"][0])] += 1
    conn.close()
    assert seen == {("blue", "A"): 750, ("green", "B"): 250}
    assert len(c.requests) == 0


def test_target_variant_header_picks_a_variant_even_at_weight_zero(gateway, servers):
    g = gateway(("blue", servers("A"), 1.0), ("green", servers("B"), 0.0))
    for _ in range(3):
        _, headers, body = g.post(headers={"X-Amzn-SageMaker-Target-Variant": "green"})
        assert json.loads(body)["predictions"][0] == "B"
        assert headers["x-Amzn-Invoked-Production-Variant"] == "green"
    status, _, body = g.post(headers={"X-Amzn-SageMaker-Target-Variant": "nope"})
    assert status == 400 and json.loads(body)["error_code"] == "BAD_REQUEST"
    assert "nope" in json.loads(body)["message"]


def test_model_errors_pass_through_in_the_containers_shape(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    for code in (400, 500):
        status, _, body = g.post(body=json.dumps({"fail": code}).encode())
        assert status == code
        doc = json.loads(body)
        assert doc["error_code"] == ("MODEL_ERROR" if code == 500 else "BAD_REQUEST")
        assert doc["request_id"]


def test_keep_alive_upstream_connections_are_reused(gateway, servers):
    a = servers("A")
    g = gateway(("primary", a, 1.0))
    conn = g.conn()
    for _ in range(50):
        assert g.post(conn=conn)[0] == 200
    conn.close()
    assert len(a.requests) == 50
    assert a.connections == 1


def test_a_connection_the_model_server_closed_is_retried_on_a_new_one(gateway, servers):
    a = servers("A")
    a.close_after_response = True  # closes after each answer without saying so
    g = gateway(("primary", a, 1.0))
    conn = g.conn()
    for _ in range(10):
        assert g.post(conn=conn)[0] == 200
    conn.close()
    assert len(a.requests) == 10 and a.connections >= 10


def test_chunked_request_bodies_are_forwarded_whole(gateway, servers):
    a = servers("A")
    g = gateway(("primary", a, 1.0))
    with socket.create_connection(("127.0.0.1", g.state.port)) as s:
        half = len(BODY) // 2
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half,
                                                          BODY[half:])
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert a.requests[-1][1] == BODY


def test_malformed_requests_get_400_and_unknown_paths_404(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    with socket.create_connection(("127.0.0.1", g.state.port)) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400 ")
    conn = g.conn()
    conn.request("GET", "/nowhere")
    resp = conn.getresponse()
    assert resp.status == 404 and json.loads(resp.read())["error_code"] == "NOT_FOUND"
    conn.request("GET", "/invocations")
    resp = conn.getresponse()
    assert resp.status == 405
    resp.read()
    conn.close()


def test_ping_is_200_while_a_variant_takes_traffic(gateway, servers):
    a = servers("A")
    g = gateway(("primary", a, 1.0))
    conn = g.conn()
    conn.request("GET", "/ping")
    assert conn.getresponse().status == 200
    conn.close()
    g.set_routes([("primary", a, 0.0)])
    conn = g.conn()
    conn.request("GET", "/ping")
    resp = conn.getresponse()
    assert resp.status == 503
    resp.read()
    status, _, body = g.post(conn=conn)
    assert status == 503 and json.loads(body)["error_code"] == "MODEL_NOT_READY"
    conn.close()


def test_an_unreachable_model_is_502_and_a_slow_one_504(gateway, servers):
    dead = servers("A")
    dead.stop()
    g = gateway(("primary", dead, 1.0))
    status, _, body = g.post()
    assert status == 502 and json.loads(body)["error_code"] == "UPSTREAM_UNAVAILABLE"
    g.stop()
    slow = gateway(("primary", servers("S", delay=2.0), 1.0), upstream_timeout=0.5)
    started = time.monotonic()
    status, _, body = slow.post()
    assert status == 504 and json.loads(body)["error_code"] == "REQUEST_TIMEOUT"
    assert time.monotonic() - started < 1.9


def test_control_requests_need_the_token(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    for method, path in (("GET", "/-/status"), ("POST", "/-/reload"), ("POST", "/-/shutdown")):
        conn = g.conn()
        conn.request(method, path, headers={"X-Mldeploy-Token": "wrong"})
        resp = conn.getresponse()
        assert resp.status == 403, path
        resp.read()
        conn.close()
    assert gw.status(g.state)["name"] == "ep"
    other = dataclasses.replace(g.state, token="not-the-token")
    assert gw.status(other) is None


def test_reload_switches_routes_and_counts_requests_in_flight_for_the_drain(gateway, servers):
    old, new = servers("OLD", delay=1.0), servers("NEW")
    g = gateway(("primary", old, 1.0))
    results: list[bytes] = []
    slow = threading.Thread(target=lambda: results.append(g.post()[2]))
    slow.start()
    deadline = time.monotonic() + 5
    while not old.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    status = g.set_routes([("primary", new, 1.0)])
    assert status["inflight"][f"c-primary-{old.port}"] == 1, "the old request is in flight"
    assert json.loads(g.post()[2])["predictions"][0] == "NEW"
    slow.join(5)
    assert json.loads(results[0])["predictions"][0] == "OLD", "the old request finished there"
    assert gw.status(g.state)["inflight"].get(f"c-primary-{old.port}", 0) == 0


def test_a_bad_state_file_on_reload_keeps_the_old_routes(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    g.store.path("ep").write_text("{not json")
    with pytest.raises(TargetError):
        gw.reload(dataclasses.replace(g.state, generation=2))
    assert json.loads(g.post()[2])["predictions"][0] == "A"


def test_start_reports_a_taken_port_with_the_gateways_log(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        store = StateStore(tmp_path)
        state = EndpointState(name="ep", port=busy.getsockname()[1])
        store.save(state)
        with pytest.raises(PortInUseError) as info:  # bad input, exit code 2, as for serve
            gw.start(state, store.path("ep"), store.log_path("ep"))
    assert "did not start" in str(info.value) and "in use" in str(info.value)


def test_shutdown_stops_the_process(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    assert gw.is_gateway_process(g.state.gateway_pid, "ep")
    assert gw.stop(g.state) is True
    assert gw.status(g.state) is None
    assert not gw.is_gateway_process(g.state.gateway_pid, "ep")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", g.state.port), timeout=1).close()
    assert gw.stop(g.state) is False


# -- the SageMaker runtime API, through boto3 -----------------------------------------------------


def test_boto3_invoke_endpoint_returns_predictions_and_the_variant(gateway, servers):
    g = gateway(("blue", servers("A"), 1.0), ("green", servers("B"), 1.0))
    rt = _runtime(g.url)
    got = rt.invoke_endpoint(EndpointName="ep", ContentType="application/json", Body=BODY,
                             CustomAttributes="c=1", TargetVariant="green")
    assert json.loads(got["Body"].read()) == {"predictions": ["B", "B"]}
    assert got["ContentType"] == "application/json"
    assert got["InvokedProductionVariant"] == "green"
    assert got["CustomAttributes"] == "echo:c=1"
    assert got["ResponseMetadata"]["RequestId"]
    variants = {rt.invoke_endpoint(EndpointName="ep", Body=BODY)["InvokedProductionVariant"]
                for _ in range(4)}
    assert variants == {"blue", "green"}


def test_boto3_unknown_endpoint_or_variant_is_a_validation_error(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    rt = _runtime(g.url)
    with pytest.raises(rt.exceptions.ValidationError) as info:
        rt.invoke_endpoint(EndpointName="other", ContentType="application/json", Body=BODY)
    assert "Endpoint other of account local not found" in str(info.value)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(rt.exceptions.ValidationError) as info:
        rt.invoke_endpoint(EndpointName="ep", Body=BODY, TargetVariant="nope")
    assert "nope" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize("code", [400, 500])
def test_boto3_model_errors_carry_the_original_status_and_message(gateway, servers, code):
    g = gateway(("primary", servers("A"), 1.0))
    rt = _runtime(g.url)
    with pytest.raises(rt.exceptions.ModelError) as info:
        rt.invoke_endpoint(EndpointName="ep", ContentType="application/json",
                           Body=json.dumps({"fail": code}).encode())
    r = info.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert r["OriginalStatusCode"] == code
    assert json.loads(r["OriginalMessage"])["message"] == f"asked to fail with {code}"
    assert r["Error"]["Code"] == "ModelError" and f"({code}) from primary" in r["Error"]["Message"]
    assert r["LogStreamArn"].startswith("docker:container/c-primary-")


def test_boto3_sees_an_unreachable_model_as_service_unavailable(gateway, servers):
    dead = servers("A")
    dead.stop()
    g = gateway(("primary", dead, 1.0))
    rt = _runtime(g.url)
    with pytest.raises(rt.exceptions.ServiceUnavailable):
        rt.invoke_endpoint(EndpointName="ep", Body=BODY)


def test_boto3_sees_a_timeout_as_a_model_error(gateway, servers):
    g = gateway(("primary", servers("S", delay=2.0), 1.0), upstream_timeout=0.5)
    rt = _runtime(g.url)
    with pytest.raises(rt.exceptions.ModelError) as info:
        rt.invoke_endpoint(EndpointName="ep", Body=BODY)
    assert "timed out" in info.value.response["Error"]["Message"]


# -- the HTTP layer's limits and strictness -------------------------------------------------------


def test_limits_come_from_the_state_then_the_environment_then_defaults():
    from mldeploy.plugins.local._http import Limits

    assert Limits.resolve({}, {}) == Limits()
    assert Limits().max_body == 6 * 1024 * 1024
    got = Limits.resolve({"max_request_bytes": 100, "head_timeout": 2},
                         {"MLDEPLOY_MAX_REQUEST_BYTES": "5", "MLDEPLOY_GATEWAY_IDLE_TIMEOUT": "7.5",
                          "MLDEPLOY_GATEWAY_HEAD_TIMEOUT": "9"})
    assert (got.max_body, got.head_timeout, got.idle_timeout) == (100, 2.0, 7.5)
    for bad in ({"max_request_bytes": "lots"}, {"head_timeout": 0}, {"max_connections": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Limits.resolve(bad, {})
    with pytest.raises(ValueError, match="MLDEPLOY_GATEWAY_MAX_CONNECTIONS"):
        Limits.resolve({}, {"MLDEPLOY_GATEWAY_MAX_CONNECTIONS": "-1"})


def test_request_ids_are_kept_only_when_sane():
    from mldeploy.plugins.local._wire import gateway_error, request_id

    assert request_id(b"abc-1.2:3_x") == "abc-1.2:3_x"
    for bad in (b"", None, b"a\nb", b"a b", b"\xff", b"x" * 129, b"a\x00"):
        fresh = request_id(bad)
        assert len(fresh) == 32 and int(fresh, 16) >= 0
    status, headers, body = gateway_error(413, "REQUEST_TOO_LARGE", "too big")
    doc = json.loads(body)
    assert set(doc) == {"error_code", "message", "request_id"}
    assert headers[b"X-Request-Id"] == doc["request_id"].encode()


def _feed(reader, raw: bytes, step: int):
    got = []
    for i in range(0, len(raw), step):
        resp = reader.feed(raw[i:i + step])
        while resp is not None:  # one response at a time: the next from what is left
            got.append(resp)
            resp = reader.feed(b"")
    return got


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_the_upstream_reader_decodes_chunked_and_sized_answers_fed_in_any_pieces(step):
    from mldeploy.plugins.local._upstream import ResponseReader

    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r1\r\n\r\n"
               + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (b"ab", b"c" * 300, b"d"))
               + b"0\r\nTrailer: x\r\n\r\n")
    sized = b"HTTP/1.1 400 BAD REQUEST\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    reader = ResponseReader()
    got = _feed(reader, chunked + sized, step)
    assert [(r.status, r.body) for r in got] == [(200, b"ab" + b"c" * 300 + b"d"), (400, b"hello")]
    assert got[0].headers[b"x-request-id"] == b"r1" and not reader.keep_alive


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX-Request-Id: a\nSet-Cookie: x=1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
])
def test_the_upstream_reader_refuses_what_could_split_or_inject(head):
    from mldeploy.plugins.local._upstream import ResponseReader, UpstreamError

    with pytest.raises(UpstreamError):
        ResponseReader().feed(head)


def test_the_upstream_reader_is_linear_in_one_byte_chunks():
    from mldeploy.plugins.local._upstream import ResponseReader

    n = 200_000
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * n
           + b"0\r\n\r\n")
    reader = ResponseReader()
    started = time.process_time()
    got = _feed(reader, raw, 65536)
    assert got[0].body == b"x" * n
    assert time.process_time() - started < 10  # the old decoder re-parsed: hours for this


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_methods_head_and_the_body_limit(gateway, servers, tmp_path):
    a = servers("A")
    g = gateway(("primary", a, 1.0))
    reply = _raw(g.state.port, b"DELETE /endpoints/ep/invocations HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: POST\r\n" in reply
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["request_id"]
    reply = _raw(g.state.port, b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n")
    reply = _raw(g.state.port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               b"6291457\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ") and b"REQUEST_TOO_LARGE" in reply
    assert not a.requests
    status, headers, _ = g.post(body=b"x" * 100, headers={"X-Request-Id": "bad id"})
    assert status == 200 and len(headers["X-Request-Id"]) == 32
    assert a.requests[-1][0]["x-request-id"] == headers["X-Request-Id"]


def test_the_body_limit_follows_the_state_and_bad_limits_keep_the_old_ones(gateway, servers):
    g = gateway(("primary", servers("A"), 1.0))
    g.state = dataclasses.replace(g.state, generation=2, limits={"max_request_bytes": 10})
    g.store.save(g.state)
    gw.reload(g.state)
    assert g.post(body=b"x" * 11)[0] == 413
    assert g.post(body=b"x" * 10)[0] == 200
    g.state = dataclasses.replace(g.state, generation=3, limits={"max_request_bytes": -1})
    g.store.save(g.state)
    with pytest.raises(TargetError):
        gw.reload(g.state)
    assert g.post(body=b"x" * 11)[0] == 413
