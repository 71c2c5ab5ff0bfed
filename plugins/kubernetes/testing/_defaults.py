"""The fields a real API server fills in on create and update, which a client comparing what it
sent with what it reads back must tolerate (kmock fills in none):

- Service: ``clusterIP``/``clusterIPs`` (kept on update when the body omits them),
  ``sessionAffinity``, ``internalTrafficPolicy``, ``ipFamilies``, ``ipFamilyPolicy``; for
  NodePort and LoadBalancer ``nodePort`` per port (kept by port name on update, as the real
  server's ``patchAllocatedValues`` does) and ``externalTrafficPolicy``; dropped again, with the
  load balancer status, when the type becomes ClusterIP;
- Deployments: ``replicas`` 1 when the body has none, ``minReadySeconds`` left out when 0
  (omitempty), the template's ``metadata.creationTimestamp: null``;
- pod templates: ``restartPolicy``, ``dnsPolicy``, ``schedulerName``, ``terminationMessagePath``,
  the deprecated ``serviceAccount`` mirroring ``serviceAccountName`` (and filling it in when only
  ``serviceAccount`` is left, as the v1 conversion does), and quantities in canonical form
  (``0.5`` -> ``500m``, ``1000m`` -> ``1``).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

_NODE_TYPES = ("NodePort", "LoadBalancer")


class Defaults:
    """Defaulting with its own address and node port allocators."""

    def __init__(self) -> None:
        self._ips = itertools.count(10)
        self._ports = itertools.count(30080)

    def apply(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """Fill in ``obj`` (in place) as the API server would; ``old``: the stored object of an
        update."""
        if kind == "Service":
            self._service(obj["spec"], (old or {}).get("spec") or {})
            if obj["spec"].get("type") != "LoadBalancer":
                obj.pop("status", None)
        elif kind == "Deployment":
            obj["spec"].setdefault("replicas", 1)
            if obj["spec"].get("minReadySeconds") == 0:
                del obj["spec"]["minReadySeconds"]
            obj["spec"]["template"].setdefault("metadata", {})["creationTimestamp"] = None
            _pod_spec(obj["spec"]["template"].setdefault("spec", {}))

    def _service(self, spec: dict[str, Any], old: dict[str, Any]) -> None:
        spec.setdefault("type", "ClusterIP")
        if not spec.get("clusterIP"):
            n = next(self._ips)
            spec["clusterIP"] = old.get("clusterIP") or f"10.96.{n // 250}.{n % 250 + 1}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec["type"] in _NODE_TYPES:
            kept = {p.get("name"): p.get("nodePort") for p in old.get("ports") or []
                    if old.get("type") in _NODE_TYPES}
            for port in spec.get("ports") or []:
                port.setdefault("nodePort", kept.get(port.get("name")) or next(self._ports))
            spec.setdefault("externalTrafficPolicy", "Cluster")
            if spec["type"] == "LoadBalancer":
                spec.setdefault("allocateLoadBalancerNodePorts", True)
        else:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
            spec.pop("externalTrafficPolicy", None)
            spec.pop("allocateLoadBalancerNodePorts", None)


def _pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for c in spec.get("containers") or []:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        for group in (c.get("resources") or {}).values():
            for key, value in group.items():
                group[key] = canonical(value)


def canonical(value: Any) -> Any:
    """The API server's spelling of a decimal quantity for the common CPU forms: a fraction in
    milli units, whole milli counts as units. Other spellings are kept."""
    text = str(value)
    try:
        if text.endswith("m") and text[:-1].isdigit() and int(text[:-1]) % 1000 == 0:
            return str(int(text[:-1]) // 1000)
        number = Decimal(text)
    except ArithmeticError:
        return value
    if number != number.to_integral_value() and (number * 1000) == (number * 1000).to_integral():
        return f"{int(number * 1000)}m"
    return value


__all__ = ["Defaults", "canonical"]
