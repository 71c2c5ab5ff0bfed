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

JSON = b"application/json"
VARIANT_HEADER = b"x-Amzn-Invoked-Production-Variant"
MAX_ORIGINAL_MESSAGE = 4096


def gateway_error(status: int, code: str, message: str,
                  request_id: str | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """An error in the container protocol's shape (for ``/invocations``)."""
    body: dict[str, str] = {"error_code": code, "message": message}
    if request_id:
        body["request_id"] = request_id
    return status, {b"Content-Type": JSON}, json.dumps(body).encode()


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


__all__ = ["VARIANT_HEADER", "endpoint_not_found", "gateway_error", "model_error",
           "model_timeout", "sagemaker_error", "unavailable", "variant_not_found"]
