"""Property-based fuzzing of the OpenAPI schema (schemathesis): no input yields a 5xx.

Both valid and deliberately invalid bodies are generated from the schema; every response
must be a documented status with a body that matches its documented schema. Every operation
is fuzzed, the batch endpoint's included (its fast path and its FastAPI route alike).
"""
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline import train_model
from pipeline.service.served import Served
from pipeline.generate_dataset import generate_tranche
from pipeline.registry.published import load_newest_model
from pipeline.service.app import API_PATH, BATCH_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.conftest import put_tranche


def _app_serving_a_freshly_trained_model() -> FastAPI:
    """Train a small model in a throw-away store and return an app holding it in memory.

    Built at import because schemathesis parametrizes from a schema object (its fixture
    route does not work with pytest 9).
    """
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(Path(root) / "store")
        put_tranche(store, generate_tranche(500, 3, seed=1).data)
        train_model.main(store)
        loaded = load_newest_model(store)
    app = create_app(lambda: loaded)
    # schemathesis calls the app without running its lifespan: set what it would.
    app.state.loaded = loaded
    app.state.served = Served(loaded)
    # Batches of up to 10,000 orders (and 10,001 for invalid ones) take older hypothesis
    # minutes per example to generate: the fuzzed schema allows 20, while the app keeps its
    # limit (tests/unit/test_batch_endpoint.py checks 10,000 and 10,001).
    schema = app.openapi()
    schema["components"]["schemas"]["BatchRequest"]["properties"]["orders"]["maxItems"] = 20
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app_serving_a_freshly_trained_model())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(case: Any) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )


def test_both_estimate_endpoints_are_in_the_fuzzed_schema() -> None:
    assert {API_PATH, BATCH_PATH} <= set(schema.raw_schema["paths"])
