"""Parts of the SageMaker emulator (see :mod:`mldeploy.testing.moto_sagemaker`): the runtime's
InvokeEndpoint, error responses and container logs."""

from __future__ import annotations

import json
import time
from typing import Any


class ContainerError(Exception):
    """Raised by a responder for a non-2xx answer of the serving container."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:200]}")
        self.status, self.body = status, body


def container_responder(base_url: str, *, timeout: float = 60.0) -> Any:
    """A responder that forwards each InvokeEndpoint to a running serving container
    (``mldeploy serve`` or the image, on 127.0.0.1): SageMaker's runtime in front of the real
    container, as ``/invocations`` with the caller's body and Content-Type."""
    import urllib.error
    import urllib.request

    url = base_url.rstrip("/") + "/invocations"

    def respond(endpoint: str, variant: str, model: str, body: bytes,
                content_type: str = "application/json") -> tuple[bytes, str]:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read(), r.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            raise ContainerError(exc.code, exc.read().decode("utf-8", "replace")) from None

    return respond


def invoke_response(em: Any, resp: Any) -> Any:
    """InvokeEndpoint as SageMaker answers it, through the emulator's responder."""
    from moto.sagemaker.models import sagemaker_backends

    backend = sagemaker_backends[resp.current_account][resp.region]
    em._advance(backend)
    name = resp.path.split("/")[2]
    ep = backend.endpoints.get(name)
    if ep is None or ep.endpoint_status not in ("InService", "Updating"):
        msg = (f"Endpoint {name} of account {resp.current_account} not found." if ep is None
               else f"Endpoint {name} is not ready (status {ep.endpoint_status}).")
        return error_response(400, "ValidationError", msg)
    cfg = backend.endpoint_configs.get(ep.endpoint_config_name)
    variants = {v["VariantName"]: v for v in (cfg.production_variants if cfg else [])}
    wanted = {k.lower(): v for k, v in resp.headers.items()}.get(
        "x-amzn-sagemaker-target-variant")
    if wanted and wanted not in variants:
        return error_response(400, "ValidationError", f"Variant {wanted} not found for endpoint "
                      f"{name}.")
    if cfg is not None and cfg.async_inference_config:
        return error_response(400, "ValidationError", f"Endpoint {name} is an asynchronous "
                              "endpoint: use InvokeEndpointAsync (emulated message).")
    weights = {v["VariantName"]: v.get("CurrentWeight", 1.0) for v in ep.production_variants}
    variant = wanted or max(variants, key=lambda v: weights.get(v, 0.0))
    if em._fail_invoke is not None:
        (status, message), em._fail_invoke = em._fail_invoke, None
        return error_response(424, "ModelError", f"Received server error ({status}) from primary "
                      "with message \"...\".", OriginalStatusCode=status,
                      OriginalMessage=json.dumps({"error_code": "MODEL_ERROR",
                                                  "message": message}))
    headers = {k.lower(): v for k, v in resp.headers.items()}
    body = resp.body if isinstance(resp.body, bytes) else (resp.body or "").encode()
    ctype_in = headers.get("content-type", "application/json")
    try:
        out, ctype = em.responder(name, variant, variants[variant]["ModelName"], body, ctype_in)
    except ContainerError as exc:  # SageMaker wraps a container's error as ModelError (424)
        kind = "client" if exc.status < 500 else "server"
        return error_response(424, "ModelError", f"Received {kind} error ({exc.status}) from "
                              f"primary with message \"{exc.body[:200]}\".",
                              OriginalStatusCode=exc.status, OriginalMessage=exc.body)
    return 200, {"Content-Type": ctype, "x-Amzn-Invoked-Production-Variant": variant}, out

def invoke_async_response(em: Any, resp: Any) -> Any:
    """InvokeEndpointAsync: reads the request from S3, answers through the responder and writes
    the result to the config's S3OutputPath (a failure to S3FailurePath), as SageMaker does."""
    import uuid

    from moto.s3.models import s3_backends
    from moto.sagemaker.models import sagemaker_backends

    backend = sagemaker_backends[resp.current_account][resp.region]
    em._advance(backend)
    name = resp.path.split("/")[2]
    ep = backend.endpoints.get(name)
    cfg = backend.endpoint_configs.get(ep.endpoint_config_name) if ep else None
    if ep is None or ep.endpoint_status not in ("InService", "Updating"):
        return error_response(400, "ValidationError", f"Endpoint {name} of account "
                              f"{resp.current_account} not found.")
    if cfg is None or not cfg.async_inference_config:
        return error_response(400, "ValidationError", f"Endpoint {name} is not an asynchronous "
                              "endpoint.")
    headers = {k.lower(): v for k, v in resp.headers.items()}
    s3 = s3_backends[resp.current_account]["aws"]
    bucket, _, key = headers.get("x-amzn-sagemaker-inputlocation", "")[5:].partition("/")
    output = cfg.async_inference_config["OutputConfig"]
    inference = uuid.uuid4().hex
    out_uri = f"{output['S3OutputPath'].rstrip('/')}/{inference}.out"
    fail_uri = (f"{output.get('S3FailurePath', output['S3OutputPath']).rstrip('/')}/"
                f"{inference}-error.out")
    variant = cfg.production_variants[0]["VariantName"]
    try:
        body = s3.get_object(bucket, key).value
        data, ctype, uri = *em.responder(name, variant, cfg.production_variants[0]["ModelName"],
                                          body, headers.get("content-type", "application/json")
                                          ), out_uri
    except ContainerError as exc:
        data, ctype, uri = exc.body.encode(), "application/json", fail_uri
    except Exception as exc:  # the input object is missing: SageMaker reports it at the end
        data, ctype, uri = f"cannot read the input: {exc}".encode(), "text/plain", fail_uri
    b, _, k = uri[5:].partition("/")
    if b not in s3.buckets:
        s3.create_bucket(b, region_name=resp.region)
    s3.put_object(b, k, value=data).set_metadata({"Content-Type": ctype})
    return 202, {"X-Amzn-SageMaker-OutputLocation": out_uri, "status": "202",
                 "X-Amzn-SageMaker-FailureLocation": fail_uri}, json.dumps(
        {"InferenceId": inference})


def write_logs(backend: Any, ep: Any, lines: list[str]) -> None:
    """Container log lines into moto's CloudWatch Logs, where SageMaker puts them."""
    from moto.logs.models import logs_backends

    logs = logs_backends[backend.account_id][backend.region_name]
    group = f"/aws/sagemaker/Endpoints/{ep.endpoint_name}"
    if group not in logs.groups:
        logs.create_log_group(group, {})
    variant = ep.production_variants[0]["VariantName"] if ep.production_variants else "v"
    stream = f"{variant}/i-emulated{len(logs.groups[group].streams)}"
    logs.create_log_stream(group, stream)
    now = int(time.time() * 1000)
    logs.put_log_events(group, stream, [{"timestamp": now + i, "message": line}
                                        for i, line in enumerate(lines)])


def default_responder(endpoint: str, variant: str, model: str, body: bytes,
                      content_type: str = "application/json") -> tuple[bytes, str]:
    """One prediction per input row: the name of the model that served it. A body that is not
    a scoring request is answered as a container's 400."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            inner = next(doc[k] for k in ("dataframe_split", "dataframe_records", "instances",
                                          "inputs") if k in doc)
            rows = len(inner["data"]) if isinstance(inner, dict) else len(inner)
        else:
            rows = len(doc)
    except (ValueError, TypeError, StopIteration, KeyError):
        raise ContainerError(400, json.dumps({
            "error_code": "BAD_REQUEST", "message": "the body is not a scoring request "
            "(dataframe_split, dataframe_records, instances or inputs)"})) from None
    return json.dumps({"predictions": [model] * rows}).encode(), "application/json"


def error_response(status: int, code: str, message: str,
                   **extra: Any) -> tuple[int, dict[str, str], bytes]:
    body = {"__type": code, "message": message, "Message": message, **extra}
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "status": str(status)}
    return status, headers, json.dumps(body).encode()
