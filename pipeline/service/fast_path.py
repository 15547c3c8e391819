"""The estimate endpoints' fast path: the two POSTs answered without FastAPI's per-request work.

Profiling the service under load (py-spy, 32 connections) showed most of a request's time in
the framework around a microsecond of arithmetic: the thread-pool hop of a `def` handler, a
dozen middleware frames, parsing the body to Python objects and validating them again,
validating the response model, and the access log. This ASGI middleware sits outside the
others and, for POST /api/v0.1/time_to_dispatch and .../batch, does only what the answer
needs:

1. check the declared type and the size of the body (as the request guard does), reading it;
2. validate the bytes straight into plain dicts with pydantic-core, against the very
   annotations of the request models (`ProductCode`, `OrdersPlaced`, extra fields forbidden);
3. estimate, and promise when asked, through the same `Served` as the routes (a batch as
   one numpy pass, with the same floats and rounding as one order), count the metrics, and
   send pre-encoded JSON.

It answers only requests it can answer with a 200. Anything else (a refusal of any kind, no
model loaded yet, an unknown product) is handed, body and all, to the FastAPI app behind it,
whose routes, guard and error handlers define every refusal: the fast path can never answer
differently from the app, only sooner. The routes stay registered for the OpenAPI schema.
"""
import time
from typing import Annotated, List, Mapping, NotRequired, Optional

import numpy as np
import pydantic_core
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from pipeline.service.api_schema import (
    MAX_BATCH_ORDERS,
    OrdersPlaced,
    ProductCode,
    PromiseProbability,
)
from pipeline.service.middleware.asgi import ASGIApp, Message, Receive, Scope, Send
from pipeline.service.middleware.request_guard import declared_json
from pipeline.service.metrics import ServiceMetrics
from pipeline.service.served import Served, current, promise_tail

JSON_HEADERS = [(b"content-type", b"application/json")]


class OrderDict(TypedDict):
    """DispatchRequest's fields and rules, validated into a dict (no model instance)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    product_code: ProductCode
    orders_placed: OrdersPlaced
    promise_probability: NotRequired[Optional[PromiseProbability]]


class BatchOrderDict(TypedDict):
    """BatchOrder's fields and rules: the batch, not each order, carries the probability."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    product_code: ProductCode
    orders_placed: OrdersPlaced


class BatchDict(TypedDict):
    """BatchRequest's fields and rules, validated into a dict (no model instances)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    orders: Annotated[List[BatchOrderDict], Field(min_length=1, max_length=MAX_BATCH_ORDERS)]
    promise_probability: NotRequired[Optional[PromiseProbability]]


ORDER = TypeAdapter(OrderDict)
BATCH = TypeAdapter(BatchDict)


def replayed(body: bytes, more_body: bool, pending: Optional[Message], receive: Receive
             ) -> Receive:
    """Return a `receive` that gives the app the bytes already read, then what follows."""
    first: List[Optional[Message]] = [
        {"type": "http.request", "body": body, "more_body": more_body}, pending
    ]

    async def replay() -> Message:
        while first:
            message = first.pop(0)
            if message is not None:
                return message
        return await receive()

    return replay


class EstimateFastPath:
    """Answer valid estimate requests directly; hand every other request to `app`.

    `limits` maps the single and batch paths to their largest body; `state` is the app's
    state, where a Served appears once the model is loaded.
    """

    def __init__(self, app: ASGIApp, single_path: str, batch_path: str,
                 limits: Mapping[str, int], state: object, metrics: ServiceMetrics) -> None:
        self.app = app
        self.single_path = single_path
        self.batch_path = batch_path
        self.limits = dict(limits)
        self.state = state
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limits.get(path)
        served = current(self.state)
        if limit is None or served is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if not declared_json(headers) or (
            declared is not None and (not declared.isdigit() or int(declared) > limit)
        ):
            await self.app(scope, receive, send)  # the guard behind refuses it
            return
        chunks: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, replayed(b"".join(chunks), True, message, receive), send)
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit or not more:
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if size > limit:
            await self.app(scope, replayed(body, more, None, receive), send)
            return
        if path == self.single_path:
            answer = self._single(served, body)
        else:
            answer = self._batch(served, body)
        if answer is None:
            await self.app(scope, replayed(body, False, None, receive), send)
            return
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(answer)).encode())],
        })
        await send({"type": "http.response.body", "body": answer})
        self.metrics.request(path, "POST", 200, time.perf_counter() - start)

    def _single(self, served: Served, body: bytes) -> Optional[bytes]:
        """Return the single endpoint's answer, or None if the app must decide."""
        try:
            order = ORDER.validate_json(body)
        except ValidationError:
            return None
        position = served.position(order["product_code"])
        if position < 0:
            return None
        orders_placed = order["orders_placed"]
        probability = order.get("promise_probability")
        if probability is not None and served.promises is None:
            return None  # the app refuses it
        hours = served.estimate(position, orders_placed)
        self.metrics.estimate(hours, orders_placed)
        answer = b'{"est_hours_to_dispatch":' + repr(hours).encode() + served.single_tail
        if probability is None:
            return answer
        promise = served.promise(position, orders_placed, probability)
        return answer[:-1] + promise_tail(promise, probability)

    def _batch(self, served: Served, body: bytes) -> Optional[bytes]:
        """Return the batch endpoint's answer, or None if the app must decide."""
        try:
            batch = BATCH.validate_json(body)
        except ValidationError:
            return None
        orders = batch["orders"]
        probability = batch.get("promise_probability")
        if probability is not None and served.promises is None:
            return None  # the app refuses it
        positions = served.positions([order["product_code"] for order in orders])
        if (positions < 0).any():
            return None
        orders_placed = np.fromiter(
            (order["orders_placed"] for order in orders), dtype=float, count=len(orders)
        )
        hours = served.estimate(positions, orders_placed)
        self.metrics.estimate_many(hours, orders_placed)
        answer = served.batch_head + pydantic_core.to_json(hours.tolist())
        if probability is None:
            return answer + b"}"
        promises = served.promise(positions, orders_placed, probability)
        return (answer + b',"promises":' + pydantic_core.to_json(promises.tolist())
                + b',"promise_probability":' + repr(probability).encode() + b"}")
