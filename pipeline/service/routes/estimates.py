"""POST /api/v0.1/time_to_dispatch and .../batch: estimates, and promises when asked.

Valid requests are answered by the fast path in front of the app (service/fast_path.py);
these routes are the contract (OpenAPI, /docs) and define every refusal.
"""
import numpy as np
from fastapi import APIRouter

from pipeline.service.api_schema import (
    API_PATH,
    BATCH_PATH,
    ERROR_RESPONSES,
    BatchEstimates,
    BatchRequest,
    DispatchEstimate,
    DispatchRequest,
)
from pipeline.service.dependencies import MetricsDep, ServedDep
from pipeline.service.refusals import require_promises, unknown_products

router = APIRouter()


# Absent fields stay absent: without promise_probability the answer is the two keys.
@router.post(API_PATH, response_model=DispatchEstimate, responses=ERROR_RESPONSES,
             response_model_exclude_none=True)
async def time_to_dispatch(
    body: DispatchRequest, served: ServedDep, metrics: MetricsDep
) -> DispatchEstimate:
    """Estimate the hours until an order of this product is dispatched, and promise them."""
    position = served.position(body.product_code)
    if position < 0:
        raise unknown_products(served, [(("body", "product_code"), body.product_code)])
    probability = body.promise_probability
    require_promises(served, probability)
    hours = served.estimate(position, body.orders_placed)
    metrics.estimate(hours, body.orders_placed)
    promise = None if probability is None else served.promise(
        position, body.orders_placed, probability
    )
    return DispatchEstimate(  # the promise's fields, None, are left out
        est_hours_to_dispatch=hours, model_version=served.model_version,
        promise_hours_to_dispatch=promise, promise_probability=probability,
    )


@router.post(BATCH_PATH, response_model=BatchEstimates, responses=ERROR_RESPONSES,
             response_model_exclude_none=True)
async def time_to_dispatch_batch(
    body: BatchRequest, served: ServedDep, metrics: MetricsDep
) -> BatchEstimates:
    """Estimate many orders at once, in order; one bad order refuses the whole batch."""
    codes = [order.product_code for order in body.orders]
    positions = served.positions(codes)
    if (positions < 0).any():
        raise unknown_products(served, [(("body", "orders", int(i), "product_code"), codes[i])
                                        for i in np.flatnonzero(positions < 0)])
    probability = body.promise_probability
    require_promises(served, probability)
    orders_placed = np.array([order.orders_placed for order in body.orders], dtype=float)
    hours = served.estimate(positions, orders_placed)
    metrics.estimate_many(hours, orders_placed)
    promises = None if probability is None else served.promise(
        positions, orders_placed, probability
    ).tolist()
    return BatchEstimates(
        model_version=served.model_version, estimates=hours.tolist(), promises=promises,
        promise_probability=probability,
    )
