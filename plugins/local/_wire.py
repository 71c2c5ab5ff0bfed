"""What the gateway puts on the wire when something is not a plain prediction.

Two dialects, one per route:

``POST /invocations``
    the serving container's own protocol: JSON ``{"error_code", "message", "request_id"}`` with
    the container's status (passed through), or the gateway's own code when no container answered.
``POST /endpoints/{name}/invocations``
    SageMaker runtime's rest-json errors as botocore parses them (``x-amzn-ErrorType`` header,
    ``Message`` in the body, the modeled members of the service model): ``ModelError`` (424, with
    ``OriginalStatusCode`` / ``OriginalMessage`` / ``LogStreamArn``) when the model answered 4xx or
    5xx, ``ValidationError`` (400) for an unknown endpoint or variant, ``ServiceUnavailable`` (503)
    when no container could be reached.
"""

from __future__ import annotations

import json
import os
import re

JSON = b"application/json"
VARIANT_HEADER = b"x-Amzn-Invoked-Production-Variant"
MAX_ORIGINAL_MESSAGE = 4096
# the serving container's rule (container/runtime.py): anything else is replaced by a fresh id
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    return os.urandom(16).hex()


def valid_request_id(value: bytes | None) -> bool:
    return bool(value) and _REQUEST_ID.fullmatch(value) is not None  # type: ignore[arg-type]


def request_id(given: bytes | None) -> str:
    """The caller's ``X-Request-Id`` when it is sane (the container's rule), else a fresh one:
    an id with a line break, a control or a non-ASCII byte never reaches a header or a log."""
    if given and _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return new_request_id()


def gateway_error(status: int, code: str, message: str,
                  request_id: str | None = None,
                  headers: dict[bytes, bytes] | None = None,
                  ) -> tuple[int, dict[bytes, bytes], bytes]:
    """An error in the container protocol's shape: ``{"error_code", "message", "request_id"}``
    (a fresh id when none is given; ``request_id`` must be sane, see :func:`request_id`)."""
    rid = request_id or new_request_id()
    body = {"error_code": code, "message": message, "request_id": rid}
    out = {b"Content-Type": JSON, b"X-Request-Id": rid.encode(), **(headers or {})}
    return status, out, json.dumps(body).encode()


def method_not_allowed(route: str, allow: bytes,
                       request_id: str | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    return gateway_error(405, "METHOD_NOT_ALLOWED",
                         f"use {allow.decode().replace(', ', ' or ')} {route}", request_id,
                         {b"Allow": allow})


def sagemaker_error(status: int, error_type: str, message: str, request_id: str,
                    **members: object) -> tuple[int, dict[bytes, bytes], bytes]:
    """A SageMaker runtime error: botocore takes the code from ``x-amzn-ErrorType`` and the
    modeled members (``OriginalStatusCode``...) from the body."""
    body = {"Message": message, **{k: v for k, v in members.items() if v is not None}}
    headers = {
        b"Content-Type": JSON,
        b"x-amzn-ErrorType": error_type.encode(),
        b"x-amzn-RequestId": request_id.encode(),
    }
    return status, headers, json.dumps(body).encode()


def endpoint_not_found(name: str, request_id: str) -> tuple[int, dict[bytes, bytes], bytes]:
    return sagemaker_error(400, "ValidationError",
                           f"Endpoint {name} of account local not found.", request_id)


def variant_not_found(endpoint: str, variant: str,
                      request_id: str) -> tuple[int, dict[bytes, bytes], bytes]:
    return sagemaker_error(400, "ValidationError",
                           f"Variant {variant} not found for endpoint {endpoint}.", request_id)


def model_error(variant: str, container: str, status: int, body: bytes,
                request_id: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """The model answered ``status`` (4xx/5xx) with ``body``: SageMaker's 424 ModelError."""
    original = body[:MAX_ORIGINAL_MESSAGE].decode("utf-8", "replace")
    kind = "client" if status < 500 else "server"
    return sagemaker_error(
        424, "ModelError",
        f'Received {kind} error ({status}) from {variant} with message "{original}". '
        f"See `docker logs {container}` for more information.",
        request_id,
        ErrorCode="CLIENT_ERROR_FROM_MODEL" if status < 500 else "INTERNAL_FAILURE_FROM_MODEL",
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=f"docker:container/{container}",
    )


def model_timeout(variant: str, container: str,
                  request_id: str) -> tuple[int, dict[bytes, bytes], bytes]:
    return sagemaker_error(
        424, "ModelError",
        f"Your invocation timed out while waiting for a response from container {variant}. "
        f"See `docker logs {container}` for more information.",
        request_id, ErrorCode="MODEL_TIMEOUT", LogStreamArn=f"docker:container/{container}")


def unavailable(message: str, request_id: str) -> tuple[int, dict[bytes, bytes], bytes]:
    return sagemaker_error(503, "ServiceUnavailable", message, request_id)


__all__ = ["VARIANT_HEADER", "endpoint_not_found", "gateway_error", "method_not_allowed",
           "model_error", "model_timeout", "new_request_id", "request_id", "sagemaker_error",
           "unavailable", "valid_request_id", "variant_not_found"]
