"""The gateway of one local endpoint: a small asyncio HTTP/1.1 server on 127.0.0.1 (by default).

Run as ``python -m mldeploy.plugins.local.gateway --state NAME.json`` (the target starts it; it
detaches and prints ``READY PORT PID`` once it listens). Routes:

``POST /invocations``                    the model, in the serving container's own protocol
``POST /endpoints/{name}/invocations``   SageMaker runtime's InvokeEndpoint, so boto3's
                                          ``sagemaker-runtime`` client works against it
``GET /ping`` (and HEAD)                 200 while at least one variant takes traffic
``GET /-/status``, ``POST /-/reload``, ``POST /-/shutdown``
                                          control, for the target only (``X-Mldeploy-Token``)

Other methods on these routes are 405 with ``Allow``. The HTTP layer (``_http``: h11, timeouts,
the connection cap, back-pressure, the body limit of the container) takes its limits from the
state's ``limits`` and ``MLDEPLOY_GATEWAY_*`` variables (:class:`~._http.Limits`).

Each request goes to one variant: the one named by ``X-Amzn-SageMaker-Target-Variant``, else
by smooth weighted round robin (exact shares, no randomness). Upstream connections are kept alive
and pooled per container. ``reload`` re-reads the state file and switches routes atomically;
requests already sent to a container that left the routes finish there, and ``/-/status``
counts them so the target can drain it before stopping it.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from mldeploy.plugins.local import _wire as wire
from mldeploy.plugins.local._http import ClientConn, Connections, Limits, Request, Respond, Response
from mldeploy.plugins.local._state import EndpointState
from mldeploy.plugins.local._upstream import Exchange, Upstream

_FORWARD = (b"content-type", b"accept", b"x-amzn-sagemaker-custom-attributes",
            b"x-amzn-sagemaker-inference-id")
_POST = b"POST"
_GET_HEAD = b"GET, HEAD"
_RETURN = {b"x-request-id": b"X-Request-Id",
           b"x-amzn-sagemaker-custom-attributes": b"X-Amzn-SageMaker-Custom-Attributes"}
_TARGET_VARIANT = b"x-amzn-sagemaker-target-variant"
_TOKEN = b"x-mldeploy-token"
_TIMEOUT = "timeout"


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} gateway[{os.getpid()}] {message}", file=sys.stderr, flush=True)


class Router:
    """Variants -> upstreams, and the smooth weighted round robin over those with weight > 0."""

    def __init__(self, variants: dict[str, Upstream], weights: dict[str, float]) -> None:
        self.variants = variants
        self._names = [v for v in variants if weights.get(v, 0.0) > 0]
        self._weights = [weights[v] for v in self._names]
        self._current = [0.0] * len(self._names)
        self._total = sum(self._weights)

    @property
    def serving(self) -> bool:
        return bool(self._names)

    def pick(self) -> Upstream | None:
        if not self._names:
            return None
        if len(self._names) == 1:
            return self.variants[self._names[0]]
        current, weights = self._current, self._weights
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self.variants[self._names[best]]


class Gateway:
    def __init__(self, state_path: Path) -> None:
        self.state_path = Path(state_path)
        self.upstreams: dict[str, Upstream] = {}
        self.router = Router({}, {})
        self.requests = 0
        self.generation = 0
        self.stopping: asyncio.Event | None = None
        self.connections: Connections | None = None
        self.limits = Limits()
        self.state = self._read()
        self.apply(self.state)

    def _read(self) -> EndpointState:
        return EndpointState.from_json(self.state_path.read_text(), str(self.state_path))

    @property
    def name(self) -> str:
        return self.state.name

    def reload(self) -> int:
        """Re-read the state file and switch to its routes."""
        return self.apply(self._read())

    def apply(self, state: EndpointState) -> int:
        """Switch to the routes of ``state`` (one assignment: atomic for the event loop).
        Containers that left are retired: idle connections closed, requests in flight kept.
        Bad limits raise ValueError before anything changes."""
        limits = Limits.resolve(state.limits)
        self.limits = limits
        if self.connections is not None:
            self.connections.set_limits(limits)
        variants: dict[str, Upstream] = {}
        for v in state.variants:
            up = self.upstreams.get(v.container)
            if up is None or (up.host, up.port) != ("127.0.0.1", v.port):
                up = Upstream(v.container, v.name, "127.0.0.1", v.port)
            up.variant, up.retired = v.name, False
            variants[v.name] = up
        keep = {up.key for up in variants.values()}
        for key, up in list(self.upstreams.items()):
            if key not in keep:
                up.retired = True
                up.close_idle()
        self.upstreams.update({up.key: up for up in variants.values()})
        self._forget_drained()
        self.state = state
        self.router = Router(variants, {v.name: v.weight for v in state.variants})
        self.generation = state.generation
        log(f"routes generation {state.generation}: "
            + (", ".join(f"{v.name}={v.weight:g}->{v.container}" for v in state.variants)
               or "none"))
        return self.generation

    def _forget_drained(self) -> None:
        for key in [k for k, up in self.upstreams.items() if up.retired and not up.inflight]:
            del self.upstreams[key]

    def status(self) -> dict[str, object]:
        self._forget_drained()
        return {
            "name": self.name, "pid": os.getpid(), "generation": self.generation,
            "requests": self.requests,
            "variants": {n: {"container": up.key, "inflight": up.inflight}
                         for n, up in self.router.variants.items()},
            "inflight": {k: up.inflight for k, up in self.upstreams.items()},
            "connections": self.connections.stats() if self.connections else {},
        }

    # -- requests ---------------------------------------------------------------------------------

    def handle(self, req: Request, respond: Respond) -> None:
        """Answer ``req`` through ``respond`` (now, or when the container has answered)."""
        try:
            path = req.path.split(b"?", 1)[0]
            if path == b"/invocations":
                if req.method != _POST:
                    respond(*wire.method_not_allowed("/invocations", _POST))
                else:
                    self.invoke(req, None, respond)
            elif path.startswith(b"/endpoints/") and path.endswith(b"/invocations"):
                if req.method != _POST:
                    respond(*wire.method_not_allowed("/endpoints/NAME/invocations", _POST))
                else:
                    name = path[len(b"/endpoints/"):-len(b"/invocations")]
                    self.invoke(req, name.decode("utf-8", "replace"), respond)
            elif path == b"/ping":
                if req.method not in (b"GET", b"HEAD"):
                    respond(*wire.method_not_allowed("/ping", _GET_HEAD))
                else:
                    respond(200 if self.router.serving else 503, {b"Content-Type": wire.JSON},
                            b"{}")
            elif path.startswith(b"/-/"):
                respond(*self.control(req, path))
            else:
                respond(*wire.gateway_error(
                    404, "NOT_FOUND", "use POST /invocations or POST /endpoints/NAME/invocations"))
        except Exception as exc:  # a bug here must not take the connection down silently
            log(f"internal error: {type(exc).__name__}: {str(exc)[:300]!r}")
            respond(*wire.gateway_error(500, "INTERNAL_ERROR", "the gateway failed; see its log"))

    def control(self, req: Request, path: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        token = req.headers.get(_TOKEN, b"")
        if not hmac.compare_digest(token, self.state.token.encode()):
            return wire.gateway_error(403, "FORBIDDEN", "control requests need the token")
        try:
            if path == b"/-/status" and req.method == b"GET":
                pass
            elif path == b"/-/reload" and req.method == b"POST":
                self.reload()
            elif path == b"/-/shutdown" and req.method == b"POST":
                log("shutdown requested")
                if self.stopping is not None:
                    asyncio.get_running_loop().call_soon(self.stopping.set)
            else:
                return wire.gateway_error(404, "NOT_FOUND", "unknown control request")
        except Exception as exc:  # a bad state file: keep the old routes serving
            log(f"control {path.decode()} failed: {exc}")
            return wire.gateway_error(500, "INTERNAL_ERROR", str(exc)[:500])
        return 200, {b"Content-Type": wire.JSON}, json.dumps(self.status()).encode()

    def invoke(self, req: Request, endpoint: str | None, respond: Respond) -> None:
        sm = endpoint is not None
        rid = wire.request_id(req.headers.get(b"x-request-id"))
        if sm and endpoint != self.name:
            respond(*wire.endpoint_not_found(endpoint or "", rid))
            return
        wanted = req.headers.get(_TARGET_VARIANT)
        if wanted:
            up = self.router.variants.get(wanted.decode("utf-8", "replace"))
            if up is None:
                name = wanted.decode("utf-8", "replace")
                respond(*(wire.variant_not_found(self.name, name, rid) if sm else
                          wire.gateway_error(400, "BAD_REQUEST", f"endpoint {self.name!r} has "
                                             f"no variant {name!r}", rid)))
                return
        else:
            up = self.router.pick()
            if up is None:
                msg = f"endpoint {self.name} has no variant with a traffic weight above 0"
                respond(*(wire.unavailable(msg, rid) if sm else
                          wire.gateway_error(503, "MODEL_NOT_READY", msg, rid)))
                return
        self.requests += 1
        head = [b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % up.port]
        headers = req.headers
        for name in _FORWARD:
            value = headers.get(name)
            if value is not None:
                head.append(name + b": " + value + b"\r\n")
        head.append(b"x-request-id: " + rid.encode() + b"\r\n")
        head.append(b"Content-Length: %d\r\n\r\n" % len(req.body))
        head.append(req.body)
        up.inflight += 1
        timeout = self.state.upstream_timeout

        def done(resp: Response | None, error: str | None) -> None:
            timer.cancel()
            up.inflight -= 1
            if up.retired and not up.inflight:
                self.upstreams.pop(up.key, None)
            if resp is not None:
                respond(*self._answer(up, resp, sm, rid))
            elif error is _TIMEOUT:
                log(f"{up.key} did not answer within {timeout:g} s (rid {rid})")
                respond(*(wire.model_timeout(up.variant, up.key, rid) if sm else
                          wire.gateway_error(504, "REQUEST_TIMEOUT", f"variant {up.variant} "
                                             f"did not answer within {timeout:g} s", rid)))
            else:
                log(f"{error} (rid {rid})")
                msg = f"variant {up.variant} is not reachable"
                respond(*(wire.unavailable(msg, rid) if sm else
                          wire.gateway_error(502, "UPSTREAM_UNAVAILABLE", msg, rid)))

        def expire() -> None:
            if not exchange.finished:
                exchange.cancel()
                done(None, _TIMEOUT)

        exchange = Exchange(up, b"".join(head), done)
        timer = asyncio.get_running_loop().call_later(timeout, expire)
        exchange.start()

    @staticmethod
    def _answer(up: Upstream, resp: Response, sm: bool,
                rid: str) -> tuple[int, dict[bytes, bytes], bytes]:
        if sm and resp.status >= 400:
            return wire.model_error(up.variant, up.key, resp.status, resp.body, rid)
        out = {b"Content-Type": resp.headers.get(b"content-type", wire.JSON),
               wire.VARIANT_HEADER: up.variant.encode()}
        for name, title in _RETURN.items():
            value = resp.headers.get(name)
            if value is not None:
                out[title] = value
        if sm:
            out[b"x-amzn-RequestId"] = resp.headers.get(b"x-request-id", rid.encode())
        return resp.status, out, resp.body


async def serve(gateway: Gateway, sock: socket.socket, stop: asyncio.Event | None = None) -> None:
    """Serve on the bound ``sock`` until ``stop`` is set (or SIGTERM/SIGINT in the main thread),
    then let requests in flight finish (at most the upstream timeout)."""
    gateway.stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping = gateway.stopping
    pool = gateway.connections = Connections(gateway.limits)
    server = await loop.create_server(
        lambda: ClientConn(pool, gateway.handle, stopping.is_set), sock=sock, backlog=BACKLOG)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.stopping.set)
    except (RuntimeError, ValueError):  # not the main thread (in-process tests)
        pass
    lim = gateway.limits
    log(f"serving {gateway.name} on {sock.getsockname()[0]}:{sock.getsockname()[1]} (body <= "
        f"{lim.max_body} bytes, head/body/idle timeouts {lim.head_timeout:g}/"
        f"{lim.body_timeout:g}/{lim.idle_timeout:g} s, <= {pool.cap} connections)")
    await gateway.stopping.wait()
    server.close()
    deadline = time.monotonic() + gateway.state.upstream_timeout
    while any(up.inflight for up in gateway.upstreams.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    pool.close_all()
    for up in gateway.upstreams.values():
        up.close_idle()
    log("stopped")


BACKLOG = 1024


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mldeploy.plugins.local.gateway")
    parser.add_argument("--state", required=True, help="the endpoint's state file")
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    args = parser.parse_args(argv)
    try:
        gateway = Gateway(Path(args.state))
        sock = bind(gateway.state.host, gateway.state.port)
    except Exception as exc:  # reported to the target through the log and the exit code
        log(f"cannot start: {exc}")
        return 2
    if not args.foreground and os.fork() != 0:
        os._exit(0)  # the parent: the target waits for it, so the gateway is never a zombie
    if not args.foreground:
        os.setsid()
    print(f"READY {sock.getsockname()[1]} {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    loop = _new_loop()
    try:
        loop.run_until_complete(serve(gateway, sock))
    finally:
        loop.close()
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (``MLDEPLOY_GATEWAY_LOOP=asyncio`` turns it off): about
    half the gateway's CPU per request."""
    choice = os.environ.get("MLDEPLOY_GATEWAY_LOOP", "auto").strip().lower()
    if choice != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found]

            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop
        except ImportError:
            if choice == "uvloop":
                log("uvloop is not installed; using asyncio's loop")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


if __name__ == "__main__":
    sys.exit(main())
