"""The front of a Compose deployment: a small HTTP/1.1 proxy (standard library only, so it runs
on any image with ``python3``) that sends every request to the model service named in
``routes.json`` beside it. The target switches traffic on replace by rewriting that file
(atomically); the proxy re-reads it when its mtime changes and, when an upstream refuses a
connection, re-reads it and retries once, so a request is not lost in the switch.

Run as ``python3 proxy.py`` with ``PROXY_LISTEN=ADDRESS:PORT`` and ``PROXY_ROUTES=FILE``.
``GET /ping`` is the upstream's ``/ping`` (503 JSON while none is routed).
"""

import http.client
import http.server
import json
import os
import socketserver
import sys
import threading

ROUTES = os.environ.get("PROXY_ROUTES", "/etc/mldeploy-proxy/routes.json")
TIMEOUT = float(os.environ.get("PROXY_UPSTREAM_TIMEOUT", "70"))
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
       "trailer", "proxy-authorization", "proxy-authenticate"}
_lock = threading.Lock()
_cache = {"mtime": None, "upstream": None}


def upstream(force=False):
    """The ``host:port`` requests go to now (None when the file is missing or unreadable)."""
    try:
        mtime = os.stat(ROUTES).st_mtime_ns
    except OSError:
        return None
    with _lock:
        if force or mtime != _cache["mtime"]:
            try:
                with open(ROUTES, encoding="utf-8") as f:
                    _cache["upstream"] = json.load(f).get("upstream")
                _cache["mtime"] = mtime
            except (OSError, ValueError):
                return _cache["upstream"]
        return _cache["upstream"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mldeploy-compose-proxy"

    def log_message(self, fmt, *args):  # access lines off: the model server logs its own
        pass

    def _answer(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        target = upstream()
        for attempt in (0, 1):
            if not target:
                return self._answer(503, b'{"error_code": "UPSTREAM_UNAVAILABLE", '
                                         b'"message": "no model service is routed"}')
            host, _, port = target.rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                conn.close()
                again = upstream(force=True)
                if attempt == 0 and again:
                    target = again
                    continue
                return self._answer(502, b'{"error_code": "UPSTREAM_UNAVAILABLE", '
                                         b'"message": "the model service does not answer"}')
            except OSError:
                conn.close()
                return self._answer(504, b'{"error_code": "UPSTREAM_UNAVAILABLE", '
                                         b'"message": "the model service timed out"}')
            conn.close()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return None
        return None

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _forward


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    host, _, port = os.environ.get("PROXY_LISTEN", "0.0.0.0:8000").rpartition(":")
    server = Server((host or "0.0.0.0", int(port)), Handler)
    print(f"proxy listening on {host}:{port}, routes from {ROUTES}", file=sys.stderr, flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
