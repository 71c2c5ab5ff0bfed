"""The fake API server: kmock's in-memory Kubernetes emulator (real 404 on missing objects and
second deletes, 409 on duplicate creates) extended with what a real API server also does:

- 422 ``Invalid`` for objects that fail the official JSON schema of the configured Kubernetes
  version in strict mode, for invalid names, for a Deployment selector that does not match its
  template, and for a change of an (immutable) Deployment selector;
- defaulting of ``uid``, ``resourceVersion``, ``generation`` (bumped when ``spec`` changes);
- label and field selectors on lists; garbage collection of owned objects;
- the controllers of :mod:`._controller` (rollouts, pods, events, logs), run before each request;
- pod logs (``.../pods/NAME/log``) and the service/pod proxy (``.../services/NAME:PORT/proxy/``),
  which serves ``/ping`` and ``/invocations`` with mldeploy's real scoring protocol on the model
  the pod's image holds.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from typing import Any

import aiohttp.web
import kmock
from kmock._internal.dicts import merge_patch_dict

from mldeploy.plugins.kubernetes._ops import merge_patch
from mldeploy.plugins.kubernetes.testing._controller import Behaviour, Controllers
from mldeploy.plugins.kubernetes.testing._defaults import Defaults

RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"), "ReplicaSet": ("apps", "v1", "replicasets"),
    "Pod": ("", "v1", "pods"), "Service": ("", "v1", "services"), "Event": ("", "v1", "events"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    "InferenceService": ("serving.kserve.io", "v1beta1", "inferenceservices"),
}
KIND_OF = {plural: kind for kind, (_, _, plural) in RESOURCES.items()}
VALIDATED = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


_MODELS: dict[str, Any] = {}


def _res(kind: str) -> Any:
    return kmock.resource(*RESOURCES[kind])


def _invalid(kind: str, name: str, field: str, message: str) -> kmock.KubernetesError:
    group = RESOURCES.get(kind, ("",))[0]
    full = f"{kind}.{group}" if group else kind
    return kmock.KubernetesError(
        status=422, reason="Invalid", message=f'{full} "{name}" is invalid: {field}: {message}',
        details={"name": name, "kind": kind.lower(),
                 "causes": [{"reason": "FieldValueInvalid", "message": message,
                             "field": field}]})


class ClusterEmulator(kmock.KubernetesEmulator):
    """Use through :class:`mldeploy.plugins.kubernetes.testing.FakeCluster`."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.version = "1.33"
        self.images: dict[str, str | None] = {}  # image reference -> model directory
        self.behaviours: dict[str, Behaviour] = {}
        self.controllers = Controllers(self, self._behaviour_of)
        self.defaults = Defaults()
        self.served: list[str] = []  # the pod that answered each proxied request
        self.models = _MODELS  # loaded models, shared by every fake cluster in the process
        self._rv = itertools.count(1)
        for kind, (group, version, plural) in RESOURCES.items():
            if kind != "InferenceService":  # KServe is not installed in this cluster
                self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                    namespaced=True, kind=kind, singular=kind.lower(),
                    verbs={"get", "list", "create", "patch", "delete"})
        self._rr = itertools.count()

    # -- Store (for the controllers) -----------------------------------------------------

    def items(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = _res(kind)
        return [json.loads(json.dumps(obj.raw)) for (r, ns, _), obj in self._objects.items()
                if r == res and not obj.deleted and (namespace is None or ns == namespace)]

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        key = (_res(obj["kind"]), meta["namespace"], meta["name"])
        if key in self._objects and self._objects[key].deleted:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        key = (_res(kind), namespace, name)
        if key in self._objects and not self._objects[key].deleted:
            obj = self._objects[key]
            if merge_patch_dict(obj.raw, patch) != obj.raw:  # no new version for a no-op
                obj.patch(patch)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        key = (_res(kind), namespace, name)
        if key in self._objects and not self._objects[key].deleted:
            uid = self._objects[key].raw["metadata"].get("uid", "")
            self._objects[key].delete()
            self.controllers.collect(kind, uid)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (_res(kind), namespace, name)
        if key in self._objects and not self._objects[key].deleted:
            return json.loads(json.dumps(self._objects[key].raw))
        return None

    # -- the API server --------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        kind = KIND_OF.get(res.plural or "") if res is not None else None
        async with self._lock:
            if request.method == kmock.method.GET or kind in (None, "Service", "Pod"):
                self.controllers.reconcile(time.monotonic())
            if kind and request.subresource and request.subresource.startswith("proxy"):
                return self._proxy(kind, request)
            if kind == "Pod" and request.subresource == "log":
                lines = self.controllers.logs.get(request.name or "", [])
                tail = int(request.params.get("tailLines", 10**6))
                return aiohttp.web.Response(text="\n".join(lines[-tail:]) + "\n" if lines else "")
            if kind and request.action == kmock.action.CREATE:
                self._admit_create(kind, request)
            elif kind and request.action == kmock.action.UPDATE:
                self._admit_patch(kind, request)
            deleted = None
            if kind and request.action == kmock.action.DELETE and request.name:
                deleted = self.get(kind, request.namespace or "", request.name)
        response = await super()._handle(request)
        async with self._lock:
            if deleted is not None:
                self.controllers.collect(kind or "", deleted["metadata"]["uid"])
            if request.method != kmock.method.GET:
                self.controllers.reconcile(time.monotonic())
        return response

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        labels = _parse_selector(request.params.get("labelSelector"))
        fields = _parse_selector(request.params.get("fieldSelector"))

        def keep(obj: dict[str, Any]) -> bool:
            have = obj.get("metadata", {}).get("labels") or {}
            return all(have.get(k) == v for k, v in labels.items()) and all(
                str(_dig(obj, k)) == v for k, v in fields.items())

        payload["items"] = [i for i in payload["items"] if keep(i)]
        return payload

    def _admit_create(self, kind: str, request: kmock.Request) -> None:
        obj = dict(request.data or {})
        meta = dict(obj.get("metadata") or {})
        meta["namespace"] = request.namespace or meta.get("namespace") or "default"
        self._validate(kind, obj)
        self.defaults.apply(kind, obj)
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._rv)), generation=1,
                    creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        obj["metadata"] = meta
        if kind == "Deployment":
            obj["status"] = {}
        object.__setattr__(request, "data", obj)

    def _admit_patch(self, kind: str, request: kmock.Request) -> None:
        old = self.get(kind, request.namespace or "", request.name or "")
        if old is None or not isinstance(request.data, dict):
            return  # kmock answers 404
        new = merge_patch_dict(old, request.data)
        new = json.loads(json.dumps(new))
        if kind == "Deployment" and new["spec"]["selector"] != old["spec"]["selector"]:
            raise _invalid(kind, old["metadata"]["name"], "spec.selector",
                           "field is immutable")
        self._validate(kind, new)
        self.defaults.apply(kind, new, old)
        meta = {"resourceVersion": str(next(self._rv))}
        if new.get("spec") != old.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        data = merge_patch(old, new)  # the request's patch with the server's defaults
        data["metadata"] = {**(data.get("metadata") or {}), **meta}
        object.__setattr__(request, "data", data)

    def _validate(self, kind: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name") or ""
        if not _NAME.match(name) or len(name) > 253:
            raise _invalid(kind, name, "metadata.name", "a lowercase RFC 1123 subdomain must "
                           "consist of lower case alphanumeric characters, '-' or '.'")
        if kind in VALIDATED:
            import jsonschema

            from mldeploy.plugins.kubernetes.testing._schema import validate

            body = {k: v for k, v in obj.items() if k != "status"}
            meta = {k: v for k, v in body["metadata"].items()
                    if k not in ("uid", "resourceVersion", "generation", "creationTimestamp")}
            try:
                validate({**body, "metadata": meta}, self.version)
            except jsonschema.ValidationError as exc:
                raise _invalid(kind, name, ".".join(map(str, exc.path)) or "body",
                               exc.message) from None
        if kind == "Deployment":
            sel = obj["spec"]["selector"].get("matchLabels", {})
            labels = obj["spec"]["template"].get("metadata", {}).get("labels", {})
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                raise _invalid(kind, name, "spec.template.metadata.labels",
                               "`selector` does not match template `labels`")

    # -- pods, proxy -------------------------------------------------------------------------

    def _behaviour_of(self, pod: dict[str, Any]) -> Behaviour:
        image = pod["spec"]["containers"][0]["image"]
        if image in self.behaviours:
            return self.behaviours[image]
        return Behaviour() if image in self.images else Behaviour("pull")

    def _proxy(self, kind: str, request: kmock.Request) -> aiohttp.web.StreamResponse:
        name = (request.name or "").split(":")[0]
        ns = request.namespace or "default"
        path = (request.subresource or "").removeprefix("proxy").strip("/")
        ready = [p for p in self.items("Pod", ns) if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in p.get("status", {}).get("conditions", []))]
        if kind == "Service":
            svc = self.get("Service", ns, name)
            if svc is None:
                return _status(404, "NotFound", f'services "{name}" not found')
            sel = svc["spec"].get("selector") or {}
            pods = sorted((p for p in ready if all(
                p["metadata"]["labels"].get(k) == v for k, v in sel.items())),
                key=lambda p: p["metadata"]["name"])
            if not pods:
                return _status(503, "ServiceUnavailable",
                               f'no endpoints available for service "{name}"')
            pod = pods[next(self._rr) % len(pods)]
        else:
            pod = next((p for p in ready if p["metadata"]["name"] == name), None)
            if pod is None:
                return _status(503, "ServiceUnavailable", f'pod "{name}" is not ready')
        return self._serve(pod, request.method.value, path, request.body,
                           request.headers.get("Content-Type"))

    def _serve(self, pod: dict[str, Any], method: str, path: str, body: bytes,
               content_type: str | None) -> aiohttp.web.StreamResponse:
        from mldeploy.container import protocol

        headers = {"X-Served-By": pod["metadata"]["name"]}
        self.served.append(pod["metadata"]["name"])
        if path in ("ping", "health") and method == "GET":
            return aiohttp.web.Response(status=200, headers=headers)
        if path != "invocations" or method != "POST":
            return aiohttp.web.Response(status=404, headers=headers, body=protocol.error_body(
                "NOT_FOUND", f"no route /{path}"), content_type="application/json")
        model = self._model(pod)
        try:
            reply = protocol.handle_invocation(body, content_type, model)
        except protocol.ProtocolError as exc:
            reply = protocol.error_reply(exc)
        return aiohttp.web.Response(status=reply.status, body=reply.body, headers=headers,
                                    content_type=reply.content_type)

    def _model(self, pod: dict[str, Any]) -> Any:
        from mldeploy.container.loader import load_model

        c = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        where = env.get("MLDEPLOY_MODEL_URI") or self.images.get(c["image"]) or ""
        if where not in self.models:
            self.models[where] = load_model(where)
        return self.models[where]


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Failure", "message": message, "reason": reason,
                                      "code": code}, status=code)


def _parse_selector(text: str | None) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in (text or "").split(",") if "=" in p]
    return {k.strip().rstrip("="): v.strip().lstrip("=") for k, v in pairs}


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


__all__ = ["ClusterEmulator", "RESOURCES"]
