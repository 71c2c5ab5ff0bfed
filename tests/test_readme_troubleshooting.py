"""The README's claims from issue #15 item 7 that no other test backs: the Troubleshooting section
is there and says what it should, the targets it lists exist, and its proxy facts hold
(local endpoints are reached without a proxy; the Kubernetes client takes the kubeconfig's
``proxy-url``). The exit-code table, boolean spellings and ``--debug`` anywhere are checked
against the code in ``test_cli.py`` and ``test_config.py``."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from importlib.metadata import entry_points
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert m, f"the README has no '## {title}' section"
    return m.group(1)


def test_troubleshooting_covers_what_new_users_trip_on():
    text = " ".join(_section("Troubleshooting").split())
    for needle in ("scripts/build-base-image.sh", "MLDEPLOY_BASE_IMAGE", "--base-image",
                   "--requirement", "mldeploy emulate sagemaker", "moto_server",
                   "AWS_ENDPOINT_URL", "KUBECONFIG", "kubectl config get-contexts",
                   "HTTPS_PROXY", "NO_PROXY", "proxy-url"):
        assert needle in text, needle


def test_the_readme_no_longer_advises_a_prune_of_every_users_images():
    for m in re.finditer(r"docker image prune", README):
        before = README[max(0, m.start() - 20):m.start()]
        assert "Not `" in before, "a docker image prune is advised again"
    assert "mldeploy cleanup" in README


def test_every_target_section_is_an_installed_target():
    heading_targets = re.findall(r"^### .*\(`-t (\w+)(?:\[|`)", README, re.M)
    registered = {ep.name for ep in entry_points(group="mldeploy.targets")}
    assert heading_targets and set(heading_targets) <= registered


def test_local_endpoints_are_reached_without_a_proxy(monkeypatch):
    """``HTTP_PROXY`` pointing at a closed port does not stop the local target's health checks
    and requests to 127.0.0.1 (plain http.client, never a proxy)."""
    from mldeploy.plugins.local._client import ping

    class Ok(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert ping(server.server_address[1]) == 200
    finally:
        server.shutdown()


def test_the_kubernetes_client_takes_the_kubeconfigs_proxy_url(tmp_path):
    pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
    from mldeploy.plugins.kubernetes._client import connect

    path = tmp_path / "kubeconfig"
    path.write_text("""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", proxy-url: "http://127.0.0.1:3128"}
users:
- name: u
  user: {token: x}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
""")
    clients = connect(None, str(path))
    assert clients.api.configuration.proxy == "http://127.0.0.1:3128"
