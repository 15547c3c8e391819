"""The HTTP contract agreed with the platform team: request and response bodies."""
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing import Annotated

from pipeline.artifact.model import MAX_ORDERS_PLACED
from pipeline.artifact.promise import MAX_PROBABILITY, MIN_PROBABILITY
from pipeline.data.tranche import MAX_PRODUCT_CODE_LENGTH

API_PATH = "/api/v0.1/time_to_dispatch"
BATCH_PATH = "/api/v0.1/time_to_dispatch/batch"
MODEL_PATH = "/api/v0.1/model"
MAX_BATCH_ORDERS = 10_000  # a basket page of a large catalogue, in one request

# Trimmed, as training trims the codes in a tranche: " SKU001 " is SKU001.
ProductCode = Annotated[
    str,
    StringConstraints(
        strict=True, strip_whitespace=True, min_length=1, max_length=MAX_PRODUCT_CODE_LENGTH
    ),
]
# Strict: a JSON boolean or a string is a client bug, not a number of orders.
OrdersPlaced = Annotated[
    float, Field(strict=True, ge=0, le=MAX_ORDERS_PLACED, allow_inf_nan=False)
]
PromiseProbability = Annotated[
    float, Field(strict=True, ge=MIN_PROBABILITY, le=MAX_PROBABILITY, allow_inf_nan=False)
]
PROMISE_PROBABILITY_DESCRIPTION = (
    f"Optional, {MIN_PROBABILITY} to {MAX_PROBABILITY}: also answer the hours by which this "
    "share of such orders (this product, this queue) are dispatched, e.g. 0.9 for a promise "
    "that holds for nine orders in ten."
)


class BatchOrder(BaseModel):
    """An order about to be placed, in a batch (the batch carries any promise_probability)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"product_code": "SKU001", "orders_placed": 112}]},
    )

    product_code: ProductCode = Field(description="The product's code, e.g. SKU001.")
    orders_placed: OrdersPlaced = Field(
        description="Orders already placed today, queued ahead of this one."
    )


class DispatchRequest(BatchOrder):
    """An order about to be placed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"product_code": "SKU001", "orders_placed": 112},
                {"product_code": "SKU001", "orders_placed": 112, "promise_probability": 0.9},
            ]
        },
    )

    promise_probability: Optional[PromiseProbability] = Field(
        None, description=PROMISE_PROBABILITY_DESCRIPTION
    )


class DispatchEstimate(BaseModel):
    """The estimate, and the model that made it."""

    est_hours_to_dispatch: float = Field(description="Estimated hours until dispatch (mean).")
    model_version: str = Field(description="Version of the published model that answered.")
    promise_hours_to_dispatch: Optional[float] = Field(
        None,
        description="Only when promise_probability was asked: the hours by which that share "
        "of such orders are dispatched (a calibrated quantile, never negative).",
    )
    promise_probability: Optional[float] = Field(
        None, description="Only when asked: the probability the promise holds, echoed."
    )


class BatchRequest(BaseModel):
    """Orders about to be placed, estimated together (a basket page)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "orders": [
                        {"product_code": "SKU001", "orders_placed": 112},
                        {"product_code": "SKU002", "orders_placed": 40},
                    ]
                }
            ]
        },
    )

    orders: List[BatchOrder] = Field(
        min_length=1,
        max_length=MAX_BATCH_ORDERS,
        description=f"1 to {MAX_BATCH_ORDERS:,} orders; one bad order refuses the request.",
    )
    promise_probability: Optional[PromiseProbability] = Field(
        None, description=PROMISE_PROBABILITY_DESCRIPTION + " One probability for the batch."
    )


class BatchEstimates(BaseModel):
    """The estimates, in the order of the request's orders, and the model that made them."""

    model_version: str = Field(description="Version of the published model that answered.")
    estimates: List[float] = Field(
        description="Estimated hours until dispatch, one per order, in order."
    )
    promises: Optional[List[float]] = Field(
        None,
        description="Only when promise_probability was asked: each order's promise, aligned "
        "with estimates, each equal to the single endpoint's.",
    )
    promise_probability: Optional[float] = Field(
        None, description="Only when asked: the probability the promises hold, echoed."
    )


class ErrorDetail(BaseModel):
    loc: List[Union[str, int]] = Field(description="Where: e.g. [\"body\", \"product_code\"].")
    msg: str = Field(description="What is wrong, for a person.")
    type: str = Field(description="What is wrong, for a program.")


class ErrorResponse(BaseModel):
    """Why a request was refused: one entry per problem."""

    detail: List[ErrorDetail]


ERROR_RESPONSES: Dict[Union[int, str], Dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body unreadable (e.g. not UTF-8)"},
    413: {"model": ErrorResponse, "description": "Body larger than any request needs"},
    415: {"model": ErrorResponse, "description": "Body not declared as application/json"},
    422: {"model": ErrorResponse, "description": "A field is missing, of the wrong type, "
          "out of range, or an unknown product"},
}


class Readiness(BaseModel):
    status: str
    model_version: str


class ModelComparison(BaseModel):
    """The champion/challenger scores on the new week's held-out rows, from training."""

    model_config = ConfigDict(extra="allow")

    live_version: Optional[str] = Field(None, description="The model served when it trained.")
    live_mae: Optional[float] = Field(
        None, description="That model's MAE on the new week: how last week's model aged."
    )
    live_r2: Optional[float] = None
    new_mae: Optional[float] = None
    new_r2: Optional[float] = None
    rows: Optional[int] = Field(None, description="Held-out rows both models answer.")
    live_promise_coverage: Optional[float] = Field(
        None, description="Share of those rows dispatched within the live model's promise at "
        "0.9: how last week's promises held on the new week (null: it had no promises)."
    )
    new_promise_coverage: Optional[float] = Field(
        None, description="The same for this model's promise at 0.9, each half of the rows "
        "under a calibration on the other half."
    )


class ModelInfo(BaseModel):
    """The model being served: what it was trained on, how good it is, and why it is live."""

    model_config = ConfigDict(protected_namespaces=())

    model_version: str
    created_at: str = Field(description="When it was trained (ISO 8601, UTC).")
    tranche: Optional[str] = Field(description="The tranche's key in the store.")
    rows: Optional[int] = Field(description="Rows of the tranche used for training.")
    products: int = Field(description="Products it answers.")
    weeks: Optional[int] = Field(
        None, description="Weekly tranches that inform it: it learned from each week's, "
        "the newest weighing most (null: trained before learning from every week)."
    )
    r2: Optional[float] = Field(description="R² on its held-out rows.")
    mae: Optional[float] = Field(description="Mean absolute error (hours), held-out rows.")
    promise_coverage: Optional[float] = Field(
        None, description="Share of held-out orders dispatched within their promise at 0.9, "
        "each half under a calibration on the other half (null: trained before promises)."
    )
    comparison: Optional[ModelComparison] = Field(
        description="Against the model it replaced, on the same rows (null for the first)."
    )
    signed: bool = Field(description="Its metadata carries an HMAC signature.")
    pinned: bool = Field(description="Served because TTD_MODEL_VERSION/--model-version named it.")
    newest_published: Optional[str] = Field(description="The newest version in the store.")
    serving_newest: bool = Field(description="False: the newest was skipped, or this is pinned.")
