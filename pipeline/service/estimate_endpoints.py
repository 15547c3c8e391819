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
3. estimate (a batch as one numpy pass over the lines' arrays, rounded exactly as the single
   endpoint rounds), and the promise when one is asked (pipeline/artifact/promise.py, the same
   floating-point steps for one order and for many), count the metrics, and send
   pre-encoded JSON.

It answers only requests it can answer with a 200. Anything else (a refusal of any kind, no
model loaded yet, an unknown product) is handed, body and all, to the FastAPI app behind it,
whose routes, guard and error handlers define every refusal: the fast path can never answer
differently from the app, only sooner. The routes stay registered for the OpenAPI schema.
"""
import json
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import pydantic_core
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import Annotated, NotRequired, TypedDict

from pipeline.service.api_schema import (
    MAX_BATCH_ORDERS,
    OrdersPlaced,
    ProductCode,
    PromiseProbability,
)
from pipeline.service.middleware.asgi import ASGIApp, Message, Receive, Scope, Send
from pipeline.service.middleware.request_guard import declared_json
from pipeline.service.metrics import ServiceMetrics
from pipeline.artifact.model import ProductLinearModel
from pipeline.artifact.promise import Promises

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


def round_hours(hours: np.ndarray) -> np.ndarray:
    """Round to 3 decimals exactly as Python's round(h, 3) does, for a whole array.

    rint(h * 1000) / 1000 gives the same float as round() unless h * 1000 lies within its
    own rounding error of a half (where round() decides on h's exact decimal value): those
    few are rounded by round() itself.
    """
    scaled = hours * 1000.0
    rounded: np.ndarray = np.rint(scaled) / 1000.0
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= 1e-9 * (1.0 + scaled)
    for i in np.flatnonzero(near_half):
        rounded[i] = round(float(hours[i]), 3)
    return rounded


class ServedLines:
    """The model's lines as arrays, with its codes' look-up table built before any request."""

    def __init__(self, model: ProductLinearModel) -> None:
        self.model = model
        self.codes = model.product_codes
        self.codes.index()
        self.intercepts = model.intercepts
        self.slopes = model.slopes

    def position(self, product_code: str) -> int:
        """Return the product's position, -1 for one the model does not answer."""
        return self.codes.find(product_code)

    def positions(self, product_codes: Sequence[str]) -> np.ndarray:
        return self.codes.find_many(product_codes)

    def estimate_one(self, position: int, orders_placed: float) -> float:
        """The single endpoint's answer: never below zero, rounded to 3 decimals."""
        hours = float(self.intercepts[position]) + float(self.slopes[position]) * orders_placed
        return round(max(0.0, hours), 3)

    def estimate_many(
        self, positions: Union[Sequence[int], np.ndarray], orders_placed: np.ndarray
    ) -> np.ndarray:
        """Estimate each (product position, orders) pair, equal to `estimate_one` for each."""
        idx = np.asarray(positions, dtype=np.intp)
        # The same two IEEE operations as estimate_one (a product, then a sum): the same floats.
        hours = self.intercepts[idx] + self.slopes[idx] * orders_placed
        # max(0.0, h) as estimate_one; + 0.0 turns a -0.0 into the 0.0 it returns.
        return round_hours(np.maximum(hours, 0.0) + 0.0)

    def line(self, position: int, orders_placed: float) -> float:
        """Return one order's line value, not floored (a promise starts from it)."""
        return float(self.intercepts[position]) + float(self.slopes[position]) * orders_placed


class Served(NamedTuple):
    """What the endpoints answer with, built once when the model is loaded."""

    lines: ServedLines
    model_version: str
    single_tail: bytes  # `,"model_version":"…"}`, after the estimate
    batch_head: bytes  # `{"model_version":"…","estimates":`, before the list
    promises: Optional[Promises] = None  # None: the model has no calibrated promises

    def promise_one(self, i: int, orders_placed: float, probability: float) -> float:
        """The single endpoint's promise: never below zero, rounded to 3 decimals."""
        assert self.promises is not None
        hours = self.promises.hours_one(i, self.lines.line(i, orders_placed), orders_placed,
                                        probability)
        return round(hours, 3)

    def promise_many(self, positions: np.ndarray, orders_placed: np.ndarray,
                     probability: float) -> np.ndarray:
        """Each order's promise, equal to `promise_one` for each."""
        assert self.promises is not None
        idx = np.asarray(positions, dtype=np.intp)
        line = self.lines.intercepts[idx] + self.lines.slopes[idx] * orders_placed
        return round_hours(self.promises.hours(idx, line, orders_placed, probability))


def served(
    model: ProductLinearModel, model_version: str, promise: Optional[Dict[str, Any]] = None
) -> Served:
    version = json.dumps(model_version).encode()
    return Served(
        ServedLines(model),
        model_version,
        b',"model_version":' + version + b"}",
        b'{"model_version":' + version + b',"estimates":',
        Promises(promise, len(model)) if promise is not None else None,
    )


def promise_tail(promise: float, probability: float) -> bytes:
    """Return `,"promise_hours_to_dispatch":…,"promise_probability":…}`."""
    return (b',"promise_hours_to_dispatch":' + repr(promise).encode()
            + b',"promise_probability":' + repr(probability).encode() + b"}")


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
    state, where `served` (a Served) appears once the model is loaded.
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
        current: Optional[Served] = getattr(self.state, "served", None)
        if limit is None or current is None:
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
            answer = self._single(current, body)
        else:
            answer = self._batch(current, body)
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

    def _single(self, current: Served, body: bytes) -> Optional[bytes]:
        """Return the single endpoint's answer, or None if the app must decide."""
        try:
            order = ORDER.validate_json(body)
        except ValidationError:
            return None
        position = current.lines.position(order["product_code"])
        if position < 0:
            return None
        orders_placed = order["orders_placed"]
        probability = order.get("promise_probability")
        if probability is not None and current.promises is None:
            return None  # the app refuses it
        hours = current.lines.estimate_one(position, orders_placed)
        self.metrics.estimate(hours, orders_placed)
        answer = b'{"est_hours_to_dispatch":' + repr(hours).encode() + current.single_tail
        if probability is None:
            return answer
        promise = current.promise_one(position, orders_placed, probability)
        return answer[:-1] + promise_tail(promise, probability)

    def _batch(self, current: Served, body: bytes) -> Optional[bytes]:
        """Return the batch endpoint's answer, or None if the app must decide."""
        try:
            batch = BATCH.validate_json(body)
        except ValidationError:
            return None
        orders = batch["orders"]
        probability = batch.get("promise_probability")
        if probability is not None and current.promises is None:
            return None  # the app refuses it
        positions = current.lines.positions([order["product_code"] for order in orders])
        if (positions < 0).any():
            return None
        orders_placed = np.fromiter(
            (order["orders_placed"] for order in orders), dtype=float, count=len(orders)
        )
        hours = current.lines.estimate_many(positions, orders_placed)
        self.metrics.estimate_many(hours, orders_placed)
        answer = current.batch_head + pydantic_core.to_json(hours.tolist())
        if probability is None:
            return answer + b"}"
        promises = current.promise_many(positions, orders_placed, probability)
        return (answer + b',"promises":' + pydantic_core.to_json(promises.tolist())
                + b',"promise_probability":' + repr(probability).encode() + b"}")
