"""A fake of the Azure ML control plane (the ``Microsoft.MachineLearningServices`` routes the
azure-ai-ml SDK calls), served over https on 127.0.0.1 for the real SDK.

- Request bodies are checked against the SDK's own REST models (:mod:`._schema`) and answers
  are built the way the service fills them in (``systemData``, ``provisioningState``,
  ``scoringUri``, ``traffic``...). An unknown route or api-version answers 501 and is recorded in
  :attr:`ControlPlane.unknown`, so a test fails loudly.
- Long operations answer 201/202 with ``Azure-AsyncOperation`` and are polled.
- A deployment is run in one of two modes; in both the model version's files are read back from
  the blob store (Azurite) into the layout Azure mounts under
  ``/var/azureml-app/azureml-models/<name>/<version>`` (a folder-registered model one level
  down). In-process (the default, fast): mldeploy's serving app answers on 127.0.0.1 from those
  files; readiness is its ``/ping``. Docker (``docker=`` a docker SDK client,
  :mod:`._docker`): the deployment's image runs on the real engine the way Azure runs a custom
  container - no arguments, the deployment's environment variables, the files mounted read-only
  at Azure's path with ``AZUREML_MODEL_DIR``, ``--network host`` on a port of its own on
  127.0.0.1 - and is probed on the inference config's liveness/readiness routes with the
  deployment's probe settings; ``get_logs`` is ``docker logs``. A model that fails to load
  fails its probes and the deployment ends ``Failed``.
- The endpoint's scoring URI is a router on 127.0.0.1 that checks the key (or token), honours
  ``azureml-model-deployment``, splits by ``traffic`` and copies ``mirror_traffic``.
- ``IDENTITY_ENDPOINT``: a managed-identity token route (App Service convention) on plain http.
- ``ARM_CLOUD_METADATA_URL``: ``/metadata/endpoints`` in the Azure Stack format.
"""

from __future__ import annotations

import datetime
import http.server
import json
import random
import re
import secrets
import shutil
import socketserver
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.plugins.azureml.testing import _schema

# The api-versions azure-ai-ml 1.35 sends (its MLClient's service clients and arm_ml_service).
API_VERSIONS = {"2022-02-01-preview", "2022-05-01", "2022-10-01", "2022-10-01-preview",
                "2023-02-01-preview", "2023-04-01", "2023-04-01-preview", "2023-06-01-preview",
                "2023-08-01-preview", "2023-10-01", "2024-01-01-preview", "2024-04-01-preview",
                "2024-10-01-preview", "2025-01-01-preview", "2025-12-01"}
BASE = (r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
        r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
ACCOUNT = "devstoreaccount1"
CONTAINER = "azureml-blobstore-fake"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _system_data() -> dict[str, str]:
    t = _now()
    return {"createdAt": t, "createdBy": "fake@example.com", "createdByType": "User",
            "lastModifiedAt": t, "lastModifiedBy": "fake@example.com",
            "lastModifiedByType": "User"}


@dataclass
class Served:
    """One deployment's running server."""

    port: int
    server: Any
    thread: threading.Thread
    model_dir: Path
    log: list[str] = field(default_factory=list)
    score_path: str = "/invocations"

    def log_lines(self) -> list[str]:
        return self.log

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.model_dir, ignore_errors=True)


class ControlPlane:
    """Start with :meth:`start`; ``base_url`` is the resource manager, ``metadata_url`` the
    cloud metadata, ``identity_url`` the managed-identity endpoint."""

    def __init__(self, cert: Path, key: Path, *, blob_url: str | None = None,
                 storage_suffix: str = "localhost:10000", location: str = "westeurope",
                 token: str = "fake-aad-token", poll_rounds: int = 0,
                 docker: Any = None) -> None:
        self.cert, self.key = cert, key
        self.docker = docker  # a docker SDK client: run each deployment's image (Docker mode)
        self.provision_timeout = 180.0  # seconds a container may take to pass its readiness
        # the deployments' 'disks' (model files read back from blob storage), made now: the
        # caller's TMPDIR holds only its own downloads
        self._disks = tempfile.mkdtemp(prefix="mldeploy-azfake-")
        self.blob_url = blob_url  # https://127.0.0.1:PORT/devstoreaccount1 (Azurite, direct)
        self.storage_suffix = storage_suffix
        self.location = location
        self.token = token
        self.poll_rounds = poll_rounds
        self.lock = threading.RLock()
        self.workspaces: set[tuple[str, str, str]] = set()
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.models: dict[str, dict[str, dict[str, Any]]] = {}
        self.model_containers: dict[str, dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.env_containers: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.served: dict[tuple[str, str], Served] = {}
        self.unknown: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_next: str | None = None  # the next deployment PUT ends Failed with this
        self.unhealthy_after: dict[tuple[str, str], int] = {}
        self.scored: list[tuple[str, str]] = []  # (endpoint, deployment) per scoring request
        self.mirrored: list[tuple[str, str]] = []
        self.identity_calls: list[dict[str, str]] = []
        self._servers: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def add_workspace(self, sub: str, rg: str, ws: str) -> None:
        self.workspaces.add((sub.lower(), rg.lower(), ws.lower()))

    def start(self) -> ControlPlane:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        arm = _Server(("127.0.0.1", 0), _ArmHandler, self)
        arm.socket = ctx.wrap_socket(arm.socket, server_side=True)
        score = _Server(("127.0.0.1", 0), _ScoreHandler, self)
        ident = _Server(("127.0.0.1", 0), _IdentityHandler, self)
        for srv in (arm, score, ident):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self._servers.append(srv)
        self.base_url = f"https://127.0.0.1:{arm.server_address[1]}/"
        self.metadata_url = f"{self.base_url}metadata/endpoints?api-version=2019-05-01"
        self.score_url = f"http://127.0.0.1:{score.server_address[1]}"
        self.identity_url = f"http://127.0.0.1:{ident.server_address[1]}/msi/token"
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for s in list(self.served.values()):
            s.stop()
        self.served.clear()
        if self.docker is not None:
            from mldeploy.plugins.azureml.testing import _docker

            _docker.remove_own(self.docker, self)
        shutil.rmtree(self._disks, ignore_errors=True)

    # -- what tests look at -------------------------------------------------------------------

    def inventory(self) -> set[str]:
        with self.lock:
            ids = {e["id"] for e in self.endpoints.values()}
            ids |= {d["id"] for d in self.deployments.values()}
            ids |= {v["id"] for vs in self.models.values() for v in vs.values()}
            return ids

    def running(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.served)

    # -- the cloud metadata -------------------------------------------------------------------

    def metadata(self) -> list[dict[str, Any]]:
        return [{
            "name": "MldeployFakeCloud",
            "portal": "https://portal.fake.mldeploy.test/",
            "resourceManager": self.base_url,
            "authentication": {"loginEndpoint": f"{self.base_url}login/",
                               "audiences": [self.base_url], "tenant": "common"},
            "suffixes": {"storage": self.storage_suffix, "acrLoginServer": "azurecr.fake"},
        }]

    # -- ids ----------------------------------------------------------------------------------

    @staticmethod
    def ws_id(sub: str, rg: str, ws: str) -> str:
        return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/{ws}")

    # -- long operations ----------------------------------------------------------------------

    def operation(self, finish: Any) -> str:
        op = uuid.uuid4().hex
        with self.lock:
            self.operations[op] = {"rounds": self.poll_rounds, "finish": finish, "status": None}
        return op

    def poll(self, op: str) -> dict[str, Any] | None:
        with self.lock:
            state = self.operations.get(op)
        if state is None:
            return None
        if state["status"] is None:
            if state["rounds"] > 0:
                state["rounds"] -= 1
                return {"status": "InProgress"}
            try:
                error = state["finish"]()
            except Exception as exc:  # noqa: BLE001 - reported as the operation's failure
                error = f"{type(exc).__name__}: {exc}"
            state["status"] = "Failed" if error else "Succeeded"
            state["error"] = error
        out: dict[str, Any] = {"status": state["status"]}
        if state["status"] == "Failed":
            out["error"] = {"code": "DeploymentFailed", "message": state["error"]}
        return out

    # -- deployments: running the model ---------------------------------------------------------

    def provision(self, ep: str, dep: str) -> str | None:
        """Run the deployment's model as Azure would; returns an error message or None."""
        with self.lock:
            d = self.deployments[(ep, dep)]
            injected, self.fail_next = self.fail_next, None
        props = d["properties"]
        if injected:
            props["provisioningState"] = "Failed"
            self._stop_served(ep, dep)
            d["_log"] = [f"Liveness probe failed: {injected}"]
            return f"{injected}"
        try:
            served = self._serve(d)
        except Exception as exc:  # noqa: BLE001
            props["provisioningState"] = "Failed"
            if self.docker is not None:
                d["_log"] = [*getattr(exc, "log", []), f"ERROR: {exc}"]
                return str(exc)
            d["_log"] = [f"ERROR: the container failed its readiness probe: {exc}"]
            return f"readiness probe failed on /ping: {exc}"
        self._stop_served(ep, dep)
        with self.lock:
            self.served[(ep, dep)] = served
        props["provisioningState"] = "Succeeded"
        d["_log"] = served.log_lines()
        return None

    def _model_files(self, model_id: str, dst: Path) -> Path:
        m = re.search(r"/models/([^/]+)/versions/([^/]+)$", model_id or "")
        if not m:
            raise RuntimeError(f"deployment names no model version: {model_id!r}")
        with self.lock:
            version = self.models[m[1]][m[2]]
        path = version["properties"]["modelUri"]
        # azureml://subscriptions/../datastores/workspaceblobstore/paths/LocalUpload/<hash>/<dir>
        found = re.search(r"/paths/(.+?)/?$", path)
        if not found or self.blob_url is None:
            raise RuntimeError(f"cannot read model path {path!r}")
        prefix = urllib.parse.unquote(found[1]).rstrip("/") + "/"
        from azure.storage.blob import ContainerClient

        client = ContainerClient(self.blob_url, CONTAINER,
                                 credential={"account_name": ACCOUNT, "account_key": AZURITE_KEY},
                                 connection_verify=str(self.cert))
        mount = dst / m[1] / m[2]  # AZUREML_MODEL_DIR
        count = 0
        for blob in client.list_blobs(name_starts_with=prefix):
            rel = blob.name[len(prefix):]
            target = mount / Path(prefix).name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.download_blob(blob.name).readall())
            count += 1
        if not count:
            raise RuntimeError(f"no model files under {prefix}")
        return mount / Path(prefix).name

    def _serve(self, d: dict[str, Any]) -> Any:
        if self.docker is not None:
            from mldeploy.plugins.azureml.testing import _docker

            return _docker.run_deployment(self, d)
        from werkzeug.serving import make_server

        from mldeploy.container.engines.flask import create_app
        from mldeploy.container.runtime import ModelRuntime
        from mldeploy.container.settings import ServerSettings

        root = Path(tempfile.mkdtemp(prefix="deployment-", dir=self._disks))
        try:
            model_dir = self._model_files(d["properties"].get("model", ""), root)
            settings = ServerSettings(model_uri=str(model_dir), workers=1, metrics="off")
            # a failed load must fail the probes, not exit this (the test's) process
            runtime = ModelRuntime(settings, on_failure=lambda _rt: None)
            runtime.start()
            app = create_app(settings, runtime)
            srv = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=srv.serve_forever, daemon=True)
            thread.start()
            port = srv.server_address[1]
            served = Served(port, srv, thread, root, [f"serving {model_dir.name} on {port}"])
            import requests

            until = time.monotonic() + 60
            while True:  # the readiness probe, on the inference config's route
                try:
                    r = requests.get(f"http://127.0.0.1:{port}/ping", timeout=2)
                    if r.status_code == 200:
                        return served
                    detail = r.text[:300]
                except requests.RequestException as exc:
                    detail = str(exc)
                failed = runtime.failure
                if failed or time.monotonic() > until:
                    served.stop()
                    raise RuntimeError(f"model did not load: {failed or detail}")
                time.sleep(0.1)
        except Exception:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def _stop_served(self, ep: str, dep: str) -> None:
        with self.lock:
            s = self.served.pop((ep, dep), None)
        if s is not None:
            s.stop()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: Any, handler: Any, plane: ControlPlane) -> None:
        super().__init__(addr, handler)
        self.plane = plane


class _Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, doc: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, ctype: str = "application/json") -> None:
        body = raw if raw is not None else (b"" if doc is None else json.dumps(doc).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _IdentityHandler(_Base):
    def do_GET(self) -> None:  # noqa: N802
        plane = self.server.plane
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        plane.identity_calls.append({"resource": q.get("resource", ""),
                                     "header": self.headers.get("X-IDENTITY-HEADER", "")})
        if not self.headers.get("X-IDENTITY-HEADER"):
            self._send(400, {"error": "missing X-IDENTITY-HEADER"})
            return
        self._send(200, {"access_token": plane.token, "expires_on": int(time.time()) + 3600,
                         "resource": q.get("resource", ""), "token_type": "Bearer"})


class _ScoreHandler(_Base):
    def do_POST(self) -> None:  # noqa: N802
        import requests

        plane = self.server.plane
        m = re.match(r"^/(?P<ep>[^/]+)/score$", self.path)
        body = self._body()
        if not m or m["ep"] not in plane.endpoints:
            self._send(404, {"message": "no such endpoint"})
            return
        ep = plane.endpoints[m["ep"]]
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {plane.keys.get(m['ep'])}" and auth != f"Bearer {plane.token}":
            self._send(401, {"message": "key or token not accepted"})
            return
        traffic = {k.lower(): v for k, v in ep["properties"].get("traffic", {}).items() if v}
        chosen = self.headers.get("azureml-model-deployment")
        if chosen:
            chosen = chosen.lower()
            if (m["ep"], chosen) not in plane.served:
                self._send(404, {"message": f"no deployment {chosen}"})
                return
        elif not traffic:
            self._send(503, {"message": "no deployment takes traffic"})
            return
        else:
            chosen = random.choices(list(traffic), weights=list(traffic.values()))[0]
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        for target, pct in (ep["properties"].get("mirrorTraffic") or {}).items():
            served = plane.served.get((m["ep"], target.lower()))
            if served and random.uniform(0, 100) < pct:
                try:
                    requests.post(f"http://127.0.0.1:{served.port}{served.score_path}", data=body,
                                  headers=headers, timeout=30)
                    plane.mirrored.append((m["ep"], target.lower()))
                except requests.RequestException:
                    pass
        served = plane.served.get((m["ep"], chosen))
        if served is None:
            self._send(502, {"message": f"deployment {chosen} is not running"})
            return
        plane.scored.append((m["ep"], chosen))
        r = requests.post(f"http://127.0.0.1:{served.port}{served.score_path}", data=body,
                          headers=headers, timeout=60)
        self._send(r.status_code, raw=r.content,
                   ctype=r.headers.get("Content-Type", "application/json"),
                   headers={"azureml-model-deployment": chosen})


class _ArmHandler(_Base):
    def _route(self, method: str) -> None:
        plane = self.server.plane
        split = urllib.parse.urlsplit(self.path)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query))
        plane.requests.append((method, path))
        body = self._body() if method in ("PUT", "POST", "PATCH") else b""
        if path == "/metadata/endpoints":
            self._send(200, plane.metadata())
            return
        if path.startswith("/operations/"):
            status = plane.poll(path.rsplit("/", 1)[1])
            self._send(200 if status else 404, status or {"error": {"code": "NotFound"}},
                       {"Retry-After": "1"} if status and status["status"] == "InProgress"
                       else None)
            return
        if self.headers.get("Authorization") != f"Bearer {plane.token}":
            self._send(401, {"error": {"code": "InvalidAuthenticationToken",
                                       "message": "the access token is invalid"}})
            return
        version = query.get("api-version")
        if version not in API_VERSIONS:
            self._unknown(method, f"{path}?api-version={version}")
            return
        m = re.match(BASE + r"(?P<rest>/.*)?$", path)
        if not m:
            self._unknown(method, path)
            return
        key = (m["sub"].lower(), m["rg"].lower(), m["ws"].lower())
        if key not in plane.workspaces:
            self._send(404, {"error": {"code": "ResourceNotFound",
                                       "message": f"workspace {m['ws']} not found"}})
            return
        wsid = plane.ws_id(m["sub"], m["rg"], m["ws"])
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            self._send(400, {"error": {"code": "BadArgument", "message": "invalid JSON"}})
            return
        rest = m["rest"] or ""
        try:
            handled = _Routes(self, plane, wsid, m["ws"]).dispatch(method, rest, doc, query)
        except _schema.SchemaError as exc:
            self._send(400, {"error": {"code": "BadArgument", "message": str(exc)}})
            return
        if not handled:
            self._unknown(method, path)

    def _unknown(self, method: str, path: str) -> None:
        self.server.plane.unknown.append(f"{method} {path}")
        self._send(501, {"error": {"code": "FakeUnknownRoute",
                                   "message": f"the fake has no route {method} {path}"}})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


class _Routes:
    def __init__(self, h: _ArmHandler, plane: ControlPlane, wsid: str, ws: str) -> None:
        self.h, self.p, self.wsid, self.ws = h, plane, wsid, ws

    def _lro(self, status: int, doc: Any, finish: Any) -> None:
        """A long operation: with ``poll_rounds`` 0 it finishes inside the request (the answer
        carries the final state, so the SDK's poller, whose interval is a fixed 5 s, never
        sleeps); else 201/202 with ``Azure-AsyncOperation`` polled ``poll_rounds`` times."""
        if self.p.poll_rounds == 0:
            try:
                error = finish()
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
            if doc is None:
                self.h._send(200, {})
            elif error:
                doc = self._public(doc)
                self.h._send(200, {**doc, "properties": {**doc["properties"],
                                                         "provisioningState": "Failed"}})
            else:
                self.h._send(status, self._public(doc))
            return
        op = self.p.operation(finish)
        doc = None if doc is None else self._public(doc)
        url = f"{self.p.base_url}operations/{op}?api-version=2025-12-01"
        self.h._send(status, doc, {"Azure-AsyncOperation": url, "Location": url,
                                   "Retry-After": "1"})

    def _notfound(self, what: str) -> None:
        self.h._send(404, {"error": {"code": "ResourceNotFound", "message": f"{what} not found"}})

    def dispatch(self, method: str, rest: str, doc: Any, query: dict[str, str]) -> bool:
        _p, h = self.p, self.h
        if rest == "" and method == "GET":
            h._send(200, self._workspace())
            return True
        if rest == "/datastores/workspaceblobstore" and method == "GET":
            h._send(200, self._datastore())
            return True
        if rest == "/datastores/workspaceblobstore/listSecrets" and method == "POST":
            h._send(200, {"secretsType": "AccountKey", "key": AZURITE_KEY})
            return True
        routes = [
            (r"/onlineEndpoints", self.endpoints),
            (r"/onlineEndpoints/(?P<e>[^/]+)", self.endpoint),
            (r"/onlineEndpoints/(?P<e>[^/]+)/(?P<action>listKeys|token)", self.endpoint_action),
            (r"/onlineEndpoints/(?P<e>[^/]+)/deployments", self.deployments),
            (r"/onlineEndpoints/(?P<e>[^/]+)/deployments/(?P<d>[^/]+)", self.deployment),
            (r"/onlineEndpoints/(?P<e>[^/]+)/deployments/(?P<d>[^/]+)/getLogs", self.logs),
            (r"/models/(?P<n>[^/]+)", self.model_container),
            (r"/models/(?P<n>[^/]+)/versions", self.model_versions),
            (r"/models/(?P<n>[^/]+)/versions/(?P<v>[^/]+)", self.model_version),
            (r"/environments/(?P<n>[^/]+)", self.env_container),
            (r"/environments/(?P<n>[^/]+)/versions/(?P<v>[^/]+)", self.env_version),
        ]
        for pattern, fn in routes:
            m = re.fullmatch(pattern, rest)
            if m:
                return fn(method, doc, query, **m.groupdict()) is not False
        return False

    # -- workspace ----------------------------------------------------------------------------

    def _workspace(self) -> dict[str, Any]:
        sub = self.wsid.split("/")[2]
        rg = self.wsid.split("/")[4]
        return {"id": self.wsid, "name": self.ws, "type": "Microsoft.MachineLearningServices/"
                "workspaces", "location": self.p.location, "kind": "Default",
                "systemData": _system_data(), "tags": {}, "identity": {"type": "SystemAssigned"},
                "properties": {
                    "friendlyName": self.ws, "workspaceId": str(uuid.uuid5(
                        uuid.NAMESPACE_URL, self.wsid)),
                    "storageAccount": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                                      f"Microsoft.Storage/storageAccounts/{ACCOUNT}",
                    "containerRegistry": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                                         "Microsoft.ContainerRegistry/registries/fakeacr",
                    "discoveryUrl": f"{self.p.base_url}discovery",
                    "mlFlowTrackingUri": "azureml://fake",
                    "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled"}}

    def _datastore(self) -> dict[str, Any]:
        return {"id": f"{self.wsid}/datastores/workspaceblobstore", "name": "workspaceblobstore",
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "systemData": _system_data(),
                "properties": {"datastoreType": "AzureBlob", "accountName": ACCOUNT,
                               "containerName": CONTAINER, "endpoint": self.p.storage_suffix,
                               "protocol": "https", "isDefault": True, "tags": {},
                               "credentials": {"credentialsType": "AccountKey"},
                               "serviceDataAccessAuthIdentity": "None"}}

    # -- endpoints ----------------------------------------------------------------------------

    def endpoints(self, method: str, doc: Any, query: dict[str, str]) -> bool:
        if method != "GET":
            return False
        with self.p.lock:
            items = [self._public(e) for e in self.p.endpoints.values()]
        self.h._send(200, {"value": items})
        return True

    @staticmethod
    def _public(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def endpoint(self, method: str, doc: Any, query: dict[str, str], e: str) -> bool:
        p, h = self.p, self.h
        e = e.lower()
        with p.lock:
            current = p.endpoints.get(e)
        if method == "GET":
            if current is None:
                self._notfound(f"online endpoint {e}")
            else:
                h._send(200, self._public(current))
            return True
        if method == "PUT":
            _schema.check(_schema.model("OnlineEndpoint"), doc)
            props = dict(doc["properties"])
            traffic = {k.lower(): int(v) for k, v in (props.get("traffic") or {}).items()}
            mirror = {k.lower(): int(v) for k, v in (props.get("mirrorTraffic") or {}).items()}
            known = {d for (ep, d) in p.deployments if ep == e}
            if traffic and sum(traffic.values()) != 100:
                h._send(400, {"error": {"code": "BadArgument",
                                        "message": "traffic must sum to 100"}})
                return True
            if set(traffic) - known or set(mirror) - known:
                h._send(400, {"error": {"code": "BadArgument", "message":
                                        "traffic names unknown deployments "
                                        f"{sorted((set(traffic) | set(mirror)) - known)}"}})
                return True
            if len(mirror) > 1 or any(v > 50 for v in mirror.values()) or any(
                    traffic.get(k, 0) for k in mirror):
                h._send(400, {"error": {"code": "BadArgument", "message":
                                        "mirror traffic: one deployment, at most 50%, "
                                        "one that takes no live traffic"}})
                return True
            if current is None:
                p.keys[e] = secrets.token_urlsafe(24)
            props.update({"provisioningState": "Updating" if current else "Creating",
                          "scoringUri": f"{p.score_url}/{e}/score",
                          "swaggerUri": f"{p.score_url}/{e}/swagger.json",
                          "traffic": traffic, "mirrorTraffic": mirror})
            stored = {"id": f"{self.wsid}/onlineEndpoints/{e}", "name": e,
                      "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                      "location": doc.get("location", p.location), "tags": doc.get("tags") or {},
                      "kind": doc.get("kind"), "identity": doc.get("identity") or {
                          "type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                          "tenantId": str(uuid.uuid4())},
                      "systemData": (current or {}).get("systemData") or _system_data(),
                      "properties": props}
            with p.lock:
                p.endpoints[e] = stored

            def finish() -> None:
                props["provisioningState"] = "Succeeded"

            self._lro(200 if current else 201, stored, finish)
            return True
        if method == "DELETE":
            if current is None:
                h._send(204)
                return True
            current["properties"]["provisioningState"] = "Deleting"

            def gone() -> None:
                with p.lock:
                    for key in [k for k in p.deployments if k[0] == e]:
                        p.deployments.pop(key)
                        p._stop_served(*key)
                    p.endpoints.pop(e, None)

            self._lro(202, None, gone)
            return True
        return False

    def endpoint_action(self, method: str, doc: Any, query: dict[str, str], e: str,
                        action: str) -> bool:
        if method != "POST":
            return False
        e = e.lower()
        if e not in self.p.endpoints:
            self._notfound(f"online endpoint {e}")
            return True
        mode = self.p.endpoints[e]["properties"].get("authMode", "Key")
        if action == "listKeys":
            if mode != "Key":
                self.h._send(400, {"error": {"code": "BadArgument", "message": "not key auth"}})
            else:
                self.h._send(200, {"primaryKey": self.p.keys[e],
                                   "secondaryKey": self.p.keys[e][::-1]})
        else:
            self.h._send(200, {"accessToken": self.p.token, "tokenType": "Bearer",
                               "expiryTimeUtc": int(time.time()) + 3600,
                               "refreshAfterTimeUtc": int(time.time()) + 1800})
        return True

    # -- deployments ----------------------------------------------------------------------------

    def deployments(self, method: str, doc: Any, query: dict[str, str], e: str) -> bool:
        if method != "GET":
            return False
        e = e.lower()
        if e not in self.p.endpoints:
            self._notfound(f"online endpoint {e}")
            return True
        with self.p.lock:
            items = [self._public(d) for (ep, _), d in self.p.deployments.items() if ep == e]
        self.h._send(200, {"value": items})
        return True

    def deployment(self, method: str, doc: Any, query: dict[str, str], e: str, d: str) -> bool:
        p, h = self.p, self.h
        e, d = e.lower(), d.lower()
        with p.lock:
            current = p.deployments.get((e, d))
        if method == "GET":
            if current is None:
                self._notfound(f"deployment {d}")
            else:
                h._send(200, self._public(current))
            return True
        if method == "PUT":
            if e not in p.endpoints:
                self._notfound(f"online endpoint {e}")
                return True
            _schema.check(_schema.model("OnlineDeployment"), doc)
            props = dict(doc["properties"])
            env = props.get("environmentId")
            if env and not self._env_exists(env):
                h._send(400, {"error": {"code": "BadArgument",
                                        "message": f"environment {env} not found"}})
                return True
            props.update({"provisioningState": "Creating" if current is None else "Updating"})
            props.setdefault("scaleSettings", {"scaleType": "Default"})
            stored = {"id": f"{self.wsid}/onlineEndpoints/{e}/deployments/{d}", "name": d,
                      "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/"
                              "deployments",
                      "location": doc.get("location", p.location), "tags": doc.get("tags") or {},
                      "kind": doc.get("kind"), "sku": doc.get("sku") or {
                          "name": "Default", "capacity": props.get("instanceCount", 1)},
                      "systemData": _system_data(), "properties": props, "_log": []}
            with p.lock:
                p.deployments[(e, d)] = stored
            self._lro(200 if current else 201, stored, lambda: p.provision(e, d))
            return True
        if method == "DELETE":
            if current is None:
                h._send(204)
                return True
            traffic = p.endpoints[e]["properties"].get("traffic") or {}
            if traffic.get(d):
                h._send(400, {"error": {"code": "BadArgument", "message":
                                        f"deployment {d} takes {traffic[d]}% of traffic"}})
                return True
            current["properties"]["provisioningState"] = "Deleting"

            def gone() -> None:
                with p.lock:
                    p.deployments.pop((e, d), None)
                p._stop_served(e, d)

            self._lro(202, None, gone)
            return True
        return False

    def logs(self, method: str, doc: Any, query: dict[str, str], e: str, d: str) -> bool:
        if method != "POST":
            return False
        _schema.check(_schema.model("DeploymentLogsRequest"), doc or {})
        dep = self.p.deployments.get((e.lower(), d.lower()))
        if dep is None:
            self._notfound(f"deployment {d}")
            return True
        served = self.p.served.get((e.lower(), d.lower()))
        lines = served.log_lines() if served is not None else dep.get("_log") or []
        tail = int((doc or {}).get("tail") or 100)
        self.h._send(200, {"content": "\n".join(lines[-tail:])})
        return True

    # -- models and environments ----------------------------------------------------------------

    def model_container(self, method: str, doc: Any, query: dict[str, str], n: str) -> bool:
        return self._container(self.p.model_containers, "models", "ModelContainer", method,
                               doc, n)

    def env_container(self, method: str, doc: Any, query: dict[str, str], n: str) -> bool:
        return self._container(self.p.env_containers, "environments", "EnvironmentContainer",
                               method, doc, n)

    def _container(self, store: dict, kind: str, schema: str, method: str, doc: Any,
                   n: str) -> bool:
        if method == "GET":
            if n not in store:
                self._notfound(f"{kind} {n}")
            else:
                self.h._send(200, store[n])
            return True
        if method == "PUT":
            _schema.check(_schema.model(schema), doc)
            store[n] = {"id": f"{self.wsid}/{kind}/{n}", "name": n,
                        "systemData": _system_data(),
                        "properties": {**doc["properties"], "latestVersion": "1"}}
            self.h._send(200, store[n])
            return True
        return False

    def model_versions(self, method: str, doc: Any, query: dict[str, str], n: str) -> bool:
        if method != "GET":
            return False
        with self.p.lock:
            versions = list(self.p.models.get(n, {}).values())
        if not versions and n not in self.p.model_containers:
            self._notfound(f"model {n}")
            return True
        self.h._send(200, {"value": versions})
        return True

    def model_version(self, method: str, doc: Any, query: dict[str, str], n: str,
                      v: str) -> bool:
        p, h = self.p, self.h
        with p.lock:
            current = p.models.get(n, {}).get(v)
        if method == "GET":
            if current is None:
                self._notfound(f"model {n}:{v}")
            else:
                h._send(200, current)
            return True
        if method == "PUT":
            _schema.check(_schema.model("ModelVersion"), doc)
            props = doc["properties"]
            if props.get("modelType") != "mlflow_model":
                h._send(400, {"error": {"code": "BadArgument",
                                        "message": f"modelType {props.get('modelType')!r}"}})
                return True
            props = {"flavors": {}, "tags": {}, "properties": {}, "isArchived": False,
                     "stage": "Development", **props, "provisioningState": "Succeeded"}
            stored = {"id": f"{self.wsid}/models/{n}/versions/{v}", "name": v,
                      "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
                      "systemData": _system_data(), "properties": props}
            with p.lock:
                p.models.setdefault(n, {})[v] = stored
            h._send(201 if current is None else 200, stored)
            return True
        if method == "DELETE":
            with p.lock:
                found = p.models.get(n, {}).pop(v, None)
                if n in p.models and not p.models[n]:
                    p.models.pop(n)
            h._send(200 if found else 204)
            return True
        return False

    def env_version(self, method: str, doc: Any, query: dict[str, str], n: str,
                    v: str) -> bool:
        p, h = self.p, self.h
        current = p.environments.get((n, v))
        if method == "GET":
            if current is None:
                self._notfound(f"environment {n}:{v}")
            else:
                h._send(200, current)
            return True
        if method == "PUT":
            _schema.check(_schema.model("EnvironmentVersion"), doc)
            props = {"tags": {}, "properties": {}, "isArchived": False,
                     "osType": "Linux", **doc["properties"], "provisioningState": "Succeeded"}
            stored = {"id": f"{self.wsid}/environments/{n}/versions/{v}", "name": v,
                      "type": "Microsoft.MachineLearningServices/workspaces/environments/"
                              "versions",
                      "systemData": _system_data(), "properties": props}
            p.environments[(n, v)] = stored
            h._send(201 if current is None else 200, stored)
            return True
        return False

    def _env_exists(self, env_id: str) -> bool:
        m = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env_id)
        return bool(m) and (m[1], m[2]) in self.p.environments


__all__ = ["ACCOUNT", "AZURITE_KEY", "CONTAINER", "ControlPlane"]
