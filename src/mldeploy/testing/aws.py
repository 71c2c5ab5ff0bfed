"""Helpers for testing against AWS emulators: a moto server on loopback, the environment that
points boto3 (and so mldeploy) at it, cheap resets, and an inventory of what a deployment left.

Nothing here is needed in production; boto3 and moto are imported on use.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

ENV_CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def free_port(consecutive: int = 1) -> int:
    """A free port on 127.0.0.1; with ``consecutive`` > 1 the first of that many free ports in a
    row (the mlserver engine binds ``port``, ``port + 1``, ``port + 2``), taken below the kernel's
    ephemeral range so an outgoing connection cannot take one before the server binds."""
    if consecutive == 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    import random

    for _ in range(200):
        first = random.randrange(20000, 32000 - consecutive)
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + consecutive):
                socks.append(socket.socket())
                socks[-1].bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {consecutive} consecutive free ports on 127.0.0.1")


def wait_http_ok(url: str, proc: Any = None, *, timeout: float = 60.0) -> bool:
    """Poll ``url`` (GET) until it answers 200: True; False once ``proc`` (a Popen) has exited
    or ``timeout`` seconds have passed."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(0.3)


@contextlib.contextmanager
def moto_server(port: int | None = None) -> Iterator[str]:
    """A moto server in a thread on 127.0.0.1; yields its URL. Stopped on exit."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port or free_port(), verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def emulator_env(endpoint_url: str | None = None, *, region: str = "us-east-1",
                 per_service: dict[str, str] | None = None) -> dict[str, str]:
    """The standard AWS variables that point any boto3 client at an emulator, with dummy
    credentials: ``AWS_ENDPOINT_URL`` for every service and ``AWS_ENDPOINT_URL_<SERVICE>`` for
    the services in ``per_service`` (e.g. ``{"s3": "http://127.0.0.1:4566"}``)."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": region, "AWS_REGION": region,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    for service, url in (per_service or {}).items():
        env["AWS_ENDPOINT_URL_" + _SERVICE_IDS.get(service, service.upper().replace("-", "_"))
            ] = url
    return env


# boto3 client names whose AWS_ENDPOINT_URL_<ID> suffix is not simply their upper-cased name
_SERVICE_IDS = {"sagemaker-runtime": "SAGEMAKER_RUNTIME",
                "application-autoscaling": "APPLICATION_AUTO_SCALING", "logs": "CLOUDWATCH_LOGS"}


def apply_env(monkeypatch: Any, env: dict[str, str]) -> None:
    """Set ``env`` with a pytest monkeypatch, clearing variables that could redirect boto3."""
    import os

    for var in list(os.environ):
        if var.startswith("AWS_ENDPOINT_URL") or var in ENV_CLEARED:
            monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def sagemaker_inventory(session: Any) -> set[str]:
    """Every resource a SageMaker deployment can leave behind, as the ids mldeploy reports:
    endpoint / endpoint-config / model ARNs, ``s3://bucket[/key]`` and autoscaling resource ids.
    For checking that a run left exactly what it should (before/after comparisons)."""
    sm, s3 = session.client("sagemaker"), session.client("s3")
    out: set[str] = set()
    for op, key, arn in (("list_endpoints", "Endpoints", "EndpointArn"),
                         ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigArn"),
                         ("list_models", "Models", "ModelArn")):
        for page in sm.get_paginator(op).paginate():
            out |= {item[arn] for item in page.get(key, [])}
    for bucket in s3.list_buckets().get("Buckets", []):
        out.add(f"s3://{bucket['Name']}")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            out |= {f"s3://{bucket['Name']}/{o['Key']}" for o in page.get("Contents", [])}
    aas = session.client("application-autoscaling")
    for page in aas.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace="sagemaker"):
        out |= {t["ResourceId"] for t in page.get("ScalableTargets", [])}
    return out
SERVICES = ("sagemaker", "sagemaker-runtime", "s3", "logs", "application-autoscaling", "sts",
            "iam")


def reset_backends(services: tuple[str, ...] = SERVICES) -> None:
    """Empty moto's backends of the services a SageMaker deployment uses (much cheaper than
    restarting ``mock_aws``, which resets every service)."""
    from moto.backends import get_backend

    for service in services:
        get_backend(service).reset()  # type: ignore[call-overload]


__all__ = ["SERVICES", "apply_env", "emulator_env", "free_port", "moto_server", "reset_backends",
           "sagemaker_inventory"]
