"""Every refusal the app makes, in one JSON shape: `{"detail": [{loc, msg, type}]}`."""
from typing import Any, Dict, Optional, Sequence, Tuple

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline.service.metrics import ServiceMetrics, refusal_reason
from pipeline.service.served import Served

Loc = Tuple[Any, ...]


def unknown_products(served: Served, codes: Sequence[Tuple[Loc, str]]) -> RequestValidationError:
    """Refuse unknown products, each at its `loc`, saying if it was dropped or never seen."""
    return RequestValidationError([_unknown(served, loc, code) for loc, code in codes])


def _unknown(served: Served, loc: Loc, code: str) -> Dict[str, Any]:
    if served.dropped_code(code):
        msg = (
            f"product code {code!r} has been dropped: it had no orders in the last "
            f"{served.carry_weeks or 'few'} weekly tranche(s), so its estimate was retired"
        )
        kind = "dropped_product_code"
    else:
        msg = f"unknown product code {code!r}: never seen in any tranche the model learned from"
        kind = "unknown_product_code"
    return {"loc": loc, "msg": msg, "type": kind, "input": code}


def require_promises(served: Served, probability: Optional[float]) -> None:
    """Refuse a promise asked of a model trained before promises were calibrated."""
    if probability is None or served.promises is not None:
        return
    raise RequestValidationError([{
        "loc": ("body", "promise_probability"),
        "msg": "the model served has no calibrated promises (it was trained before they "
        "existed); ask without promise_probability, or retrain",
        "type": "promise_unavailable",
        "input": probability,
    }])


async def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Say which field is wrong and why, without echoing the input back.

    FastAPI's default echoes the input, which fails to render for NaN or a lone surrogate
    (a 500) and would send a megabyte product code back to its sender.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    _count(request, refusal_reason(str(errors[0].get("type", ""))) if errors else "other")
    detail = [
        {
            "loc": list(error.get("loc", ("body",))),
            "msg": "request body is not valid JSON"
            if error.get("type") == "json_invalid"
            else str(error.get("msg", "invalid")),
            "type": str(error.get("type", "invalid")),
        }
        for error in errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Give every other refusal (400, 404, 405, 503) the same shape as a 422."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = str(exc.detail) if isinstance(exc, HTTPException) else "error"
    if status == 400:
        message = "request body is not readable: send UTF-8 JSON"
        _count(request, "unreadable_body")
    return JSONResponse(
        status_code=status,
        content={"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]},
        headers=getattr(exc, "headers", None),
    )


def _count(request: Request, reason: str) -> None:
    metrics: Optional[ServiceMetrics] = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refuse(reason)
