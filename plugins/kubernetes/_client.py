"""The Kubernetes API calls, on wire-form dicts.

The ``kubernetes`` package loads the kubeconfig (or the in-cluster config) and provides the
authenticated transport (its ``ApiClient``: TLS, client certificates, bearer tokens refreshed by
exec plugins). The REST calls are made here on plain dicts, so the bodies are exactly the
manifests ``--dry-run`` prints and behave the same with every client major version (31-37).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.errors import ConfigError, MissingExtraError
from mldeploy.plugins.kubernetes.errors import ApiError, Unreachable, scrub

# kind -> (API path prefix, plural)
KINDS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "Event": ("/api/v1", "events"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "InferenceService": ("/apis/serving.kserve.io/v1beta1", "inferenceservices"),
}
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# mldeploy.images.Builder: (ImageRequest, log) -> the reference to run (built and pushed)
ImageBuilder = Callable[[Any, Callable[[str], None]], str]


@dataclass
class Clients:
    """What a target talks to: ``api`` a ``kubernetes.client.ApiClient``; ``namespace`` the
    kubeconfig context's namespace; ``build_image(request, log) -> image`` (the image service's
    builder seam, :data:`mldeploy.images.Builder`) builds and pushes a serving image (None: the
    image builder with Docker)."""

    api: Any
    namespace: str | None = None
    build_image: ImageBuilder | None = None


def connect(context: str | None, kubeconfig: str | None) -> Clients:
    """Clients from the kubeconfig (``context`` or its current one), else the in-cluster
    service account when no kubeconfig is found and none was named."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise MissingExtraError("the kubernetes target needs the kubernetes package, which "
                                  "is not installed",
                                  hint="pip install 'mldeploy[kubernetes]'") from None
    cfg = client.Configuration()
    path = os.path.expanduser(kubeconfig) if kubeconfig else None
    try:
        config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                persist_config=False)
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        namespace = (chosen or {}).get("context", {}).get("namespace")
    except config.ConfigException as exc:
        if context or kubeconfig or not os.path.exists(_SA_NAMESPACE):
            raise ConfigError(f"cannot load the kubeconfig: {_first_line(exc)}",
                              hint="set KUBECONFIG or -C kubeconfig=PATH, and name an existing "
                                   "context (kubectl config get-contexts)") from None
        config.load_incluster_config(client_configuration=cfg)
        with open(_SA_NAMESPACE, encoding="utf-8") as fh:
            namespace = fh.read().strip() or None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the kubeconfig: {_first_line(exc)}",
                          hint="check the file given by KUBECONFIG or -C kubeconfig") from None
    return Clients(client.ApiClient(cfg), namespace)


def _first_line(exc: BaseException) -> str:
    return scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


class Kube:
    """REST calls in one namespace through an authenticated ``ApiClient``."""

    def __init__(self, api: Any, namespace: str, *, timeout: float = 30.0) -> None:
        self.api = api
        self.namespace = namespace
        self.timeout = timeout

    @property
    def host(self) -> str:
        return str(self.api.configuration.host).rstrip("/")

    def path(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = KINDS[kind]
        out = f"{prefix}/namespaces/{self.namespace}/{plural}"
        if name is not None:
            out += "/" + urllib.parse.quote(name, safe=":")
        return out + (f"/{sub}" if sub else "")

    # -- transport --------------------------------------------------------------------------

    def raw(self, method: str, path: str, *, body: bytes | None = None,
            query: Mapping[str, Any] | None = None, content_type: str = "application/json",
            accept: str = "application/json", timeout: float | None = None) -> tuple[int, bytes,
                                                                                  str]:
        """One request; returns ``(status, body, content type)`` whatever the status."""
        import urllib3

        url = self.host + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": accept, "User-Agent": "mldeploy"}
        if body is not None:
            headers["Content-Type"] = content_type
        auth = self.api.configuration.auth_settings().get("BearerToken") or {}
        if auth.get("value"):
            headers[auth["key"]] = auth["value"]
        try:
            resp = self.api.rest_client.pool_manager.request(
                method, url, body=body, headers=headers,
                timeout=urllib3.Timeout(total=timeout or self.timeout),
                retries=urllib3.Retry(total=2, connect=2, read=0, status=0, redirect=0, other=0),
                preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"{urllib.parse.urlsplit(self.host).netloc}: "
                              f"{type(reason).__name__}") from None
        return resp.status, resp.data or b"", resp.headers.get("Content-Type", "")

    def call(self, method: str, path: str, body: Any = None, *,
             query: Mapping[str, Any] | None = None,
             content_type: str = "application/json") -> dict[str, Any]:
        """A JSON request; an error status raises :class:`ApiError`."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        status, raw, _ = self.raw(method, path, body=data, query=query,
                                  content_type=content_type)
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:200].decode("utf-8", "replace")}
        if status >= 400:
            raise api_error(status, decoded)
        return decoded if isinstance(decoded, dict) else {}

    # -- objects ----------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", self.path(kind, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, labels: Mapping[str, str] | None = None,
             fields: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": _selector(labels), "fieldSelector": _selector(fields)}
        items = self.call("GET", self.path(kind), query=query).get("items") or []
        # Filter here too: a proxy or fake that ignores selectors must not widen what we touch.
        return [i for i in items if _matches(i, labels, fields)]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", self.path(obj["kind"]), obj)

    def patch(self, kind: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386: None removes a key, lists are replaced)."""
        return self.call("PATCH", self.path(kind, name), patch,
                         content_type="application/merge-patch+json")

    def delete(self, kind: str, name: str, *, propagation: str = "Background") -> bool:
        """Delete ``name``; False if it was not there (404)."""
        try:
            self.call("DELETE", self.path(kind, name),
                      {"kind": "DeleteOptions", "apiVersion": "v1",
                       "propagationPolicy": propagation})
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def log(self, pod: str, container: str, *, tail: int, previous: bool) -> str:
        query = {"container": container, "tailLines": tail,
                 "previous": "true" if previous else None}
        status, raw, _ = self.raw("GET", self.path("Pod", pod, "log"), query=query,
                                  accept="text/plain")
        return raw.decode("utf-8", "replace") if status < 400 else ""

    def proxy(self, kind: str, name: str, port: str, path: str, body: bytes | None = None, *,
              method: str = "POST", content_type: str = "application/json",
              timeout: float | None = None) -> tuple[int, bytes, str]:
        """A request to a Service or Pod through the API server's proxy."""
        target = self.path(kind, f"{name}:{port}", "proxy/" + path.lstrip("/"))
        return self.raw(method, target, body=body, content_type=content_type, accept="*/*",
                        timeout=timeout)


def api_error(status: int, body: Mapping[str, Any]) -> ApiError:
    """An ApiError from a ``Status`` answer (its details - which may hold server-side
    tracebacks in fakes - are read for field causes only)."""
    causes = tuple(
        f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
        for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict))
    return ApiError(status, str(body.get("reason") or ""), str(body.get("message") or ""),
                    tuple(scrub(c, 200) for c in causes))


def _selector(values: Mapping[str, str] | None) -> str | None:
    return ",".join(f"{k}={v}" for k, v in values.items()) if values else None


def _dig(obj: Mapping[str, Any], dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _matches(obj: Mapping[str, Any], labels: Mapping[str, str] | None,
             fields: Mapping[str, str] | None) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in (labels or {}).items()) and all(
        str(_dig(obj, k)) == v for k, v in (fields or {}).items())


__all__ = ["KINDS", "Clients", "ImageBuilder", "Kube", "api_error", "connect"]
