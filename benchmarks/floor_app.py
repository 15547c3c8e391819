"""The floor for benchmarks/serve.py: FastAPI with our request and response models, no work.

It validates the same DispatchRequest and returns a constant DispatchEstimate from an
`async def`, run by plain `uvicorn benchmarks.floor_app:app` with uvicorn's defaults: what
any FastAPI service with this contract costs before it does anything of its own.
"""
from fastapi import FastAPI

from pipeline.service.api_schema import DispatchEstimate, DispatchRequest

API_PATH = "/api/v0.1/time_to_dispatch"  # not imported from serve_model: the floor stays bare
CONSTANT = DispatchEstimate(est_hours_to_dispatch=1.0, model_version="floor")

app = FastAPI()


@app.post(API_PATH, response_model=DispatchEstimate)
async def time_to_dispatch(body: DispatchRequest) -> DispatchEstimate:
    """Answer a constant, whatever the (validated) order."""
    return CONSTANT
