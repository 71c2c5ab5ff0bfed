"""A fake of an Azure Container Registry on https 127.0.0.1: ACR's token exchange and the Docker
Registry HTTP API V2 routes ``docker push`` and a manifest pull use.

- ``POST /oauth2/exchange`` (``grant_type=access_token``): an Azure AD access token the fake
  accepts (:attr:`FakeACR.aad_tokens`) -> an ACR refresh token; anything else is a 401.
- ``GET|POST /oauth2/token``: the Docker engine's token request (Basic auth with ACR's null-GUID
  user and the refresh token as password, or ``grant_type=refresh_token|password``) -> a bearer
  access token.
- ``/v2/``: every route needs that bearer token (401 with a ``WWW-Authenticate`` challenge
  naming the realm otherwise): blob HEAD/GET, uploads (POST, chunked PATCH, PUT with the digest
  checked), manifest PUT/GET/HEAD. Blobs are kept in a directory, manifests in memory.

The engine treats registries on 127.0.0.0/8 as insecure: it speaks https to this one without
verifying the self-signed certificate (mldeploy's own exchange call verifies it, through
``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import secrets
import shutil
import socketserver
import ssl
import tempfile
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

NULL_USER = "00000000-0000-0000-0000-000000000000"


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: Any, handler: Any, acr: FakeACR) -> None:
        super().__init__(addr, handler)
        self.acr = acr


class FakeACR:
    """Start with :meth:`start`; ``login_server`` is ``127.0.0.1:PORT``."""

    def __init__(self, cert: Path, key: Path, aad_tokens: set[str]) -> None:
        self.cert, self.key = cert, key
        self.aad_tokens = set(aad_tokens)
        self.refresh_tokens: set[str] = set()
        self.access_tokens: set[str] = set()
        self.blobs_dir = Path(tempfile.mkdtemp(prefix="mldeploy-azfake-acr-"))
        self.uploads: dict[str, Path] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}  # (repo, ref) -> body
        self.exchanges: list[int] = []  # status of each /oauth2/exchange
        self.refused: list[str] = []  # /v2 requests refused for want of a token
        self.pulled: list[str] = []  # blob GETs: a pull (a push only HEADs blobs)
        self.lock = threading.Lock()

    def start(self) -> FakeACR:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self._srv = _Server(("127.0.0.1", 0), _Handler, self)
        self._srv.socket = ctx.wrap_socket(self._srv.socket, server_side=True)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        self.login_server = f"127.0.0.1:{self._srv.server_address[1]}"
        return self

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        shutil.rmtree(self.blobs_dir, ignore_errors=True)

    def blob(self, digest: str) -> Path:
        return self.blobs_dir / digest.replace(":", "_")

    def tags(self, repo: str) -> dict[str, str]:
        """``tag -> manifest digest`` of ``repo``."""
        with self.lock:
            refs = {ref: body for (r, ref), body in self.manifests.items() if r == repo}
        return {ref: "sha256:" + hashlib.sha256(body).hexdigest()
                for ref, (body, _) in refs.items() if not ref.startswith("sha256:")}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, status: int, doc: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, ctype: str = "application/json",
              head: bool = False) -> None:
        body = raw if raw is not None else (b"" if doc is None else json.dumps(doc).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _chunks(self) -> Any:
        """The request body in pieces (Content-Length or chunked transfer encoding)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self._exactly(size)
                self.rfile.readline()
        yield from self._exactly(int(self.headers.get("Content-Length") or 0))

    def _exactly(self, left: int) -> Any:
        """``left`` bytes of the body in pieces of at most 1 MiB (fewer if the client hangs up)."""
        while left:
            piece = self.rfile.read(min(left, 1 << 20))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def _body(self) -> bytes:
        return b"".join(self._chunks())

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
               head: bool = False) -> None:
        self._send(status, {"errors": [{"code": code, "message": message}]}, headers, head=head)

    # -- tokens -----------------------------------------------------------------------------------

    def _exchange(self) -> None:
        acr = self.server.acr
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        token = form.get("access_token", "")
        if form.get("grant_type") != "access_token" or token not in acr.aad_tokens:
            acr.exchanges.append(401)
            self._error(401, "UNAUTHORIZED", "the Azure AD access token is not valid for this "
                                            "registry (expired, or another tenant)")
            return
        refresh = secrets.token_urlsafe(24)
        acr.refresh_tokens.add(refresh)
        acr.exchanges.append(200)
        self._send(200, {"refresh_token": refresh})

    def _token(self, method: str) -> None:
        acr = self.server.acr
        secret = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            if user != NULL_USER:
                secret = ""
        if method == "POST":
            form = dict(urllib.parse.parse_qsl(self._body().decode()))
            secret = form.get("refresh_token") or form.get("password") or secret
        if secret not in acr.refresh_tokens:
            self._error(401, "UNAUTHORIZED", "the refresh token is not valid")
            return
        access = secrets.token_urlsafe(24)
        acr.access_tokens.add(access)
        self._send(200, {"access_token": access, "token": access, "expires_in": 3600})

    def _authorized(self, head: bool) -> bool:
        acr = self.server.acr
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in acr.access_tokens:
            return True
        acr.refused.append(f"{self.command} {self.path}")
        realm = f"https://{acr.login_server}/oauth2/token"
        self._error(401, "UNAUTHORIZED", "authentication required", head=head, headers={
            "WWW-Authenticate": f'Bearer realm="{realm}",service="{acr.login_server}"'})
        return False

    # -- routes -----------------------------------------------------------------------------------

    def _route(self) -> None:
        acr = self.server.acr
        method = self.command
        split = urllib.parse.urlsplit(self.path)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query))
        head = method == "HEAD"
        if path == "/oauth2/exchange" and method == "POST":
            return self._exchange()
        if path == "/oauth2/token" and method in ("GET", "POST"):
            return self._token(method)
        if not path.startswith("/v2/"):
            return self._error(404, "NOT_FOUND", f"no route {method} {path}")
        if not self._authorized(head):
            return None
        if path == "/v2/":
            return self._send(200, {}, head=head)
        m = re.match(r"^/v2/(?P<repo>.+?)/(?P<kind>blobs/uploads|blobs|manifests)/?"
                     r"(?P<ref>[^/]*)$", path)
        if not m:
            return self._error(404, "NOT_FOUND", f"no route {method} {path}")
        repo, kind, ref = m["repo"], m["kind"], m["ref"]
        if kind == "blobs" and method in ("HEAD", "GET"):
            blob = acr.blob(ref)
            if not blob.exists():
                return self._error(404, "BLOB_UNKNOWN", ref, head=head)
            if not head:
                acr.pulled.append(ref)
            data = b"" if head else blob.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(blob.stat().st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Docker-Content-Digest", ref)
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return None
        if kind == "blobs/uploads":
            return self._upload(method, repo, ref, query)
        if kind == "manifests":
            return self._manifest(method, repo, ref, head)
        return self._error(405, "UNSUPPORTED", f"{method} {path}")

    def _upload(self, method: str, repo: str, upload: str, query: dict[str, str]) -> None:
        acr = self.server.acr
        if method == "POST" and not upload:
            if query.get("mount") and acr.blob(query["mount"]).exists():
                self._body()
                return self._send(201, None, {"Location": f"/v2/{repo}/blobs/{query['mount']}",
                                              "Docker-Content-Digest": query["mount"]})
            uid = uuid.uuid4().hex
            acr.uploads[uid] = acr.blobs_dir / f"upload-{uid}"
            acr.uploads[uid].write_bytes(b"".join(self._chunks()))
            return self._send(202, None, {"Location": f"/v2/{repo}/blobs/uploads/{uid}",
                                          "Docker-Upload-UUID": uid, "Range": "0-0"})
        part = acr.uploads.get(upload)
        if part is None:
            self._body()
            return self._error(404, "BLOB_UPLOAD_UNKNOWN", upload)
        with part.open("ab") as out:
            for piece in self._chunks():
                out.write(piece)
        size = part.stat().st_size
        if method == "PATCH":
            return self._send(202, None, {"Location": f"/v2/{repo}/blobs/uploads/{upload}",
                                          "Docker-Upload-UUID": upload,
                                          "Range": f"0-{max(size - 1, 0)}"})
        if method == "PUT":
            digest = query.get("digest", "")
            h = hashlib.sha256()
            with part.open("rb") as f:
                for piece in iter(lambda: f.read(1 << 20), b""):
                    h.update(piece)
            if digest != f"sha256:{h.hexdigest()}":
                part.unlink()
                acr.uploads.pop(upload, None)
                return self._error(400, "DIGEST_INVALID", f"{digest} does not match")
            part.replace(acr.blob(digest))
            acr.uploads.pop(upload, None)
            return self._send(201, None, {"Location": f"/v2/{repo}/blobs/{digest}",
                                          "Docker-Content-Digest": digest})
        return self._error(405, "UNSUPPORTED", method)

    def _manifest(self, method: str, repo: str, ref: str, head: bool) -> None:
        acr = self.server.acr
        if method == "PUT":
            body = self._body()
            ctype = self.headers.get("Content-Type", "application/json")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            with acr.lock:
                acr.manifests[(repo, ref)] = (body, ctype)
                acr.manifests[(repo, digest)] = (body, ctype)
            return self._send(201, None, {"Location": f"/v2/{repo}/manifests/{digest}",
                                          "Docker-Content-Digest": digest})
        if method in ("GET", "HEAD"):
            with acr.lock:
                found = acr.manifests.get((repo, ref))
            if found is None:
                return self._error(404, "MANIFEST_UNKNOWN", f"{repo}:{ref}", head=head)
            body, ctype = found
            return self._send(200, raw=body, ctype=ctype, head=head, headers={
                "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
        return self._error(405, "UNSUPPORTED", method)

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def do_HEAD(self) -> None:  # noqa: N802
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        self._route()

    def do_PUT(self) -> None:  # noqa: N802
        self._route()

    def do_PATCH(self) -> None:  # noqa: N802
        self._route()


__all__ = ["FakeACR", "NULL_USER"]
