"""The HTTP contract agreed with the platform team: request and response bodies."""
from typing import Any, Dict, List, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import Annotated

from pipeline.tranche import MAX_PRODUCT_CODE_LENGTH

MAX_ORDERS_PLACED = 1_000_000  # far above any day's queue; keeps estimates finite

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


class DispatchRequest(BaseModel):
    """An order about to be placed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"product_code": "SKU001", "orders_placed": 112}]},
    )

    product_code: ProductCode = Field(description="The product's code, e.g. SKU001.")
    orders_placed: OrdersPlaced = Field(
        description="Orders already placed today, queued ahead of this one."
    )


class DispatchEstimate(BaseModel):
    """The estimate, and the model that made it."""

    est_hours_to_dispatch: float = Field(description="Estimated hours until dispatch.")
    model_version: str = Field(description="Version of the published model that answered.")


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
