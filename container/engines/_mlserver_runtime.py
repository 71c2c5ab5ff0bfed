"""MLServer runtime for the ``mlserver`` engine (imported only when that engine runs).

A thin adapter: the model loads in the background through :class:`ModelRuntime` (so ``/ping``
is registered at once and answers 503 until the model is ready, like the flask engine), and
every route calls :mod:`mldeploy.container.protocol`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Depends, Header, Request, Response
from mlserver.codecs import NumpyCodec, PandasCodec
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.model import MLModel
from mlserver.types import InferenceRequest, InferenceResponse

from .. import metrics, protocol
from ..protocol import STATUS, ProtocolError, error_body
from ..runtime import ModelRuntime, request_id
from .mlserver import settings_from_extra

# Request-level ``parameters`` that belong to the V2 protocol (and MLServer), not to the model.
_V2_RESERVED = frozenset({"content_type", "headers"})


async def _body(request: Request) -> bytes:
    return await request.body()


_PROCESS_METRICS: list[metrics.ServerMetrics] = []


def process_metrics(engine: str) -> metrics.ServerMetrics:
    """This process's metrics, in prometheus_client's global registry (the one MLServer's
    metrics server renders); created once per process (MLServer may load a model again)."""
    if not _PROCESS_METRICS:
        from prometheus_client import REGISTRY

        _PROCESS_METRICS.append(metrics.ServerMetrics(engine, REGISTRY))
    return _PROCESS_METRICS[0]


class MldeployRuntime(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra if self.settings.parameters else {}
        self._server = settings_from_extra(extra)
        self._runtime = ModelRuntime(self._server)
        self._metrics = process_metrics("mlserver") if self._server.metrics == "on" else None
        self._runtime.start()
        if self._metrics is not None:
            self._metrics.watch(self._runtime)
        return True

    def _observe(self, route: str, started: float, body: bytes, response: Response) -> Response:
        if self._metrics is not None:
            self._metrics.observe(route, response.status_code, time.perf_counter() - started,
                                  len(body), len(response.body))
        return response

    @custom_handler(rest_path="/ping", rest_method="GET")
    async def ping_route(self) -> Response:
        started = time.perf_counter()
        if self._runtime.ready.is_set():
            return self._observe("/ping", started, b"", Response(b"", 200))
        return self._observe("/ping", started, b"", _error(
            "MODEL_NOT_READY", "the model is loading", request_id(None)))

    @custom_handler(rest_path="/health", rest_method="GET")
    async def health_route(self) -> Response:
        return await self.ping_route()

    @custom_handler(rest_path="/version", rest_method="GET")
    async def version_route(self) -> Response:  # MLModel.version is taken
        import orjson

        return Response(orjson.dumps(self._runtime.version()), 200,
                        media_type="application/json")

    @custom_handler(rest_path="/metrics", rest_method="GET")
    async def metrics_route(self, accept: str | None = Header(default=None)) -> Response:
        """The same exposition as MLServer's metrics port: its metrics and ours."""
        if self._metrics is None:
            return _error("NOT_FOUND", "metrics are off (MLDEPLOY_METRICS=off)", request_id(None))
        body, content_type = self._metrics.render(accept)
        return Response(body, 200, media_type=content_type)

    @custom_handler(rest_path="/invocations")
    async def invocations_route(
        self,
        body: bytes = Depends(_body),
        content_type: str | None = Header(default=None),
        accept: str | None = Header(default=None),
        x_request_id: str | None = Header(default=None),
    ) -> Response:
        started = time.perf_counter()
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        try:
            response = await self._invocations(body, content_type, accept,
                                               request_id(x_request_id))
        finally:
            if self._metrics is not None:
                self._metrics.in_flight.dec()
        return self._observe("/invocations", started, body, response)

    async def _invocations(self, body: bytes, content_type: str | None, accept: str | None,
                           rid: str) -> Response:
        limit = self._server.max_request_bytes
        if len(body) > limit:
            return _error("REQUEST_TOO_LARGE",
                          f"the body is {len(body)} bytes; the limit is {limit} bytes", rid)
        try:
            reply = await asyncio.to_thread(self._runtime.invoke, body, content_type, accept)
        except ProtocolError as err:
            return _error(err.error_code, err.message, rid)
        return Response(reply.body, reply.status, media_type=reply.content_type,
                        headers={"X-Request-Id": rid})

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """MLServer's V2 protocol: the request's inputs as columns, enforced like /invocations;
        the request's own ``parameters`` (besides V2's ``content_type`` and ``headers``) are the
        model's MLflow ``params``."""
        if not self._runtime.ready.is_set():
            raise MLServerError("the model is loading", status_code=503)
        model = self._runtime.model
        frame = PandasCodec.decode_request(payload)
        try:
            data = protocol.enforce_frame(frame, model)
            result = await asyncio.to_thread(
                protocol.predict, model, protocol.ModelInput(data, v2_params(payload))
            )
        except ProtocolError as err:
            raise MLServerError(err.message, status_code=err.status) from None
        if hasattr(result, "to_numpy") and hasattr(result, "columns"):
            return PandasCodec.encode_response(self.name, result, self.version)
        import numpy as np

        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("predictions", np.asarray(result))],
        )


def v2_params(payload: InferenceRequest) -> dict[str, Any] | None:
    """The MLflow params a V2 request carries: its ``parameters`` minus the V2 protocol's own."""
    if payload.parameters is None:
        return None
    params = {
        key: value
        for key, value in payload.parameters.model_dump(exclude_none=True).items()
        if key not in _V2_RESERVED
    }
    return params or None


def _error(code: str, message: str, rid: str) -> Response:
    return Response(error_body(code, message, rid), STATUS[code],
                    media_type="application/json", headers={"X-Request-Id": rid})
