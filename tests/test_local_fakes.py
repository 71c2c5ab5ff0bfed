"""Fakes for the local target's fast tests (no tests in here): in-process model servers on
127.0.0.1 that speak the serving container's protocol, and an engine that runs them in place of
Docker containers. The gateway, state files and orchestration under test are the real ones."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field

from mldeploy.plugins.local._client import ContainerInfo, ContainerSpec, Engine


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeModelServer

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.connections += 1

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if self.server.close_after_response:
            self.close_connection = True  # close without telling the client (no header)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200 if self.server.healthy else 503, b"{}")
        else:
            self._send(404, b'{"error_code": "NOT_FOUND", "message": "no such path"}')

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv = self.server
        with srv.lock:
            srv.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if srv.delay:
            time.sleep(srv.delay)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("fail"):
            status = int(doc["fail"])
            code = doc.get("code") or ("MODEL_ERROR" if status >= 500 else "BAD_REQUEST")
            out = json.dumps({"error_code": code, "message": f"asked to fail with {status}",
                              "request_id": self.headers.get("X-Request-Id", "")})
            self._send(status, out.encode())
            return
        rows = 1
        if isinstance(doc, dict) and "dataframe_split" in doc:
            rows = len(doc["dataframe_split"].get("data") or [])
        headers = {"X-Request-Id": self.headers.get("X-Request-Id", "none")}
        if self.headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            headers["X-Amzn-SageMaker-Custom-Attributes"] = "echo:" + self.headers[
                "X-Amzn-SageMaker-Custom-Attributes"]
        self._send(200, json.dumps({"predictions": [srv.answer] * rows}).encode(), headers)


class FakeModelServer(http.server.ThreadingHTTPServer):
    """A model server on 127.0.0.1:``port`` answering ``{"predictions": [answer] * rows}``;
    ``{"fail": 500}`` in the body makes it answer that status in the container's error shape."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: str, port: int = 0, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.answer = answer
        self.delay = delay
        self.healthy = True
        self.close_after_response = False
        self.connections = 0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class _Container:
    spec: ContainerSpec
    server: FakeModelServer | None
    status: str = "running"
    exit_code: int = 0
    logs: str = ""


@dataclass
class FakeEngine(Engine):
    """Runs "containers" as :class:`FakeModelServer` threads. An image is a name; what the model
    answers is the image's ``answer`` (set by ``build``: the model directory's name). Images whose
    answer starts with ``broken`` start a server that exits at once with a log line, and
    ``fail_next`` makes the next container exit with that reason in its log."""

    images: dict[str, str] = field(default_factory=dict)  # ref -> answer
    containers: dict[str, _Container] = field(default_factory=dict)
    fail_next: str | None = None
    builds: int = 0
    requests: list = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(client=object())

    def image_id(self, ref: str) -> str | None:
        return f"sha256:{abs(hash(ref)):x}" if ref in self.images else None

    def build(self, request, log) -> str:  # type: ignore[override]
        self.builds += 1
        self.requests.append(request)
        self.images[request.reference] = request.model_dir.name
        log(f"built {request.reference}")
        return self.image_id(request.reference) or ""

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        answer = self.images.get(spec.image, spec.image)
        reason, self.fail_next = self.fail_next, None
        if reason or answer.startswith("broken"):
            text = (f"serving {answer}\nGET /ping 503\nTraceback (most recent call last):\n"
                    '  File "/opt/x.py", line 1, in load\n    load()\n    ^^^^^^\n'
                    f"RuntimeError: {reason or 'the model cannot load'}\nexiting")
            self.containers[spec.name] = _Container(spec, None, "exited", 3, text)
        else:
            server = FakeModelServer(answer, spec.port)
            self.containers[spec.name] = _Container(spec, server, logs=f"serving {answer}")
        info = self.inspect(spec.name)
        assert info is not None
        return info

    def inspect(self, name: str) -> ContainerInfo | None:
        c = self.containers.get(name)
        if c is None:
            return None
        return ContainerInfo(name, f"id-{name}", c.status, c.exit_code, False,
                             dict(c.spec.labels))

    def find(self, labels: dict[str, str]) -> list[ContainerInfo]:
        out = []
        for name, c in self.containers.items():
            if all(c.spec.labels.get(k) == v for k, v in labels.items()):
                info = self.inspect(name)
                assert info is not None
                out.append(info)
        return out

    def logs(self, name: str, lines: int) -> str:
        c = self.containers.get(name)
        return "\n".join(c.logs.splitlines()[-lines:]) if c and lines > 0 else ""

    def remove(self, name: str, stop_timeout: int = 10) -> bool:
        c = self.containers.pop(name, None)
        if c is None:
            return False
        if c.server is not None:
            c.server.stop()
        return True

    def crash(self, name: str) -> None:
        """The container dies (as after a restart or an OOM kill)."""
        c = self.containers[name]
        if c.server is not None:
            c.server.stop()
            c.server = None
        c.status, c.exit_code = "exited", 137

    def server(self, name: str) -> FakeModelServer:
        c = self.containers[name]
        assert c.server is not None
        return c.server

    def stop_all(self) -> None:
        for name in list(self.containers):
            self.remove(name)
