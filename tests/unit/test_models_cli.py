"""The model list an operator reads instead of `aws s3 ls`."""
import json
from datetime import datetime

import pytest

from pipeline import models, train_model
from pipeline.generate_dataset import generate_tranche
from pipeline.registry.published import ModelVerificationError, artifact_key
from pipeline.registry.store import LocalStore
from tests.conftest import put_tranche

KEY = b"signing key"


def two_weeks(store: LocalStore) -> "tuple[str, str]":
    put_tranche(store, generate_tranche(1000, 5, seed=1).data, datetime(2021, 7, 9))
    first = train_model.main(store, signing_key=KEY)
    put_tranche(store, generate_tranche(1000, 5, seed=2).data, datetime(2021, 7, 16))
    second = train_model.main(store, signing_key=KEY)
    return first, second


def test_the_list_shows_each_model_newest_first_with_its_week_and_the_live_models_mae(
    store: LocalStore,
) -> None:
    first, second = two_weeks(store)
    rows = models.model_rows(store, KEY)
    assert [r.version for r in rows] == [second, first]
    assert rows[0].tranche == "time_to_dispatch_2021-07-16T00:00:00.csv"
    assert rows[0].rows == 1000 and rows[0].products == 5
    assert (rows[0].weeks, rows[1].weeks) == (2, 1)  # the weekly tranches that inform each
    assert rows[0].live_mae is not None and rows[1].live_mae is None
    assert all(r.signed and r.verifies for r in rows)
    assert rows[0].promise_coverage is not None and 0.8 < rows[0].promise_coverage < 1.0
    table = models.main(store, KEY).splitlines()
    assert table[0].split()[:3] == ["version", "trained", "at"]
    assert table[1].startswith(second) and table[2].startswith(first)
    header = table[0].split()
    assert header[header.index("MAE") + 1:header.index("MAE") + 3] == ["within", "0.9"]
    cells = table[1].split()
    assert cells[cells.index(f"{rows[0].mae:.4f}") + 1] == f"{rows[0].promise_coverage:.1%}"


def test_a_model_that_does_not_verify_is_listed_as_such_with_the_reason(
    store: LocalStore,
) -> None:
    first, second = two_weeks(store)
    path = store.root / artifact_key(second)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    rows = models.model_rows(store, KEY)
    assert (rows[0].verifies, rows[1].verifies) == (False, True)
    assert "SHA-256 differs" in rows[0].problem
    assert f"{second}: does not verify:" in models.main(store, KEY)
    assert [r.verifies for r in models.model_rows(store, b"other key")] == [False, False]


def test_show_prints_one_models_metadata_and_an_unknown_version_lists_the_newest(
    store: LocalStore,
) -> None:
    first, second = two_weeks(store)
    shown = json.loads(models.main(store, show=first))
    assert shown["model_version"] == first and "comparison" in shown
    with pytest.raises(ModelVerificationError, match=f"newest: {second}, {first}"):
        models.main(store, show="20200101T000000000000Z-000000000000")


def test_an_empty_store_says_so(store: LocalStore) -> None:
    assert models.main(store) == f"no published model in {store.uri}"
