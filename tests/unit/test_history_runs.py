"""Learning from every week, run after run: the state each run leaves, its lineage, and what
the next run does after an upgrade, a rollback, a refused week, or a state lost or altered."""
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline import generate_dataset, train_model
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import split_by_product
from pipeline.registry.published import (
    LoadedModel,
    load_model,
    load_newest_model,
    published_versions,
)
from pipeline.registry.states import parse_state, read_state, state_key
from pipeline.registry.store import LocalStore
from pipeline.service.app import API_PATH, create_app
from tests.conftest import put_tranche

FIRST_WEEK = datetime(2026, 11, 20, 23)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "models_before_history"


def drop_week(store: LocalStore, n: int, without: Optional[List[str]] = None,
              rows: int = 3000, skus: int = 40) -> None:
    data = generate_dataset.generate_tranche(rows, skus, seed=n + 1, zipf=1.1).data
    if without:
        data = data[~data[PRODUCT].isin(without)]
    put_tranche(store, data, FIRST_WEEK + timedelta(weeks=n))


def history(loaded: LoadedModel) -> Dict[str, object]:
    section: Dict[str, object] = loaded.metadata.history_section().model_dump(exclude_none=True)
    return section


def test_each_run_leaves_a_state_the_next_run_starts_from(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1)
    second = train_model.main(store)
    one, two = load_model(store, first), load_model(store, second)
    assert history(one)["began"] == "fresh" and history(one)["weeks"] == 1
    assert "started_from" not in history(one)
    split = split_by_product(generate_dataset.generate_tranche(3000, 40, seed=1, zipf=1.1).data)
    alone = PooledLinearRegressor().fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS])
    assert one.model.slopes.tolist() == alone.slopes_.tolist()  # the first week, as before
    assert history(two)["began"] == "state" and history(two)["weeks"] == 2
    assert history(two)["started_from"] == state_key(first)
    assert history(two)["state_key"] == state_key(second)
    state = read_state(store, two.metadata)
    assert state.weeks == 2 and state.tranche_key == two.metadata.dataset_section().key
    assert set(state.products.codes.tolist()) == set(two.model.product_codes.tolist())
    assert f"Learning from the history of 1 week(s) in {store.location(state_key(first))}" \
        in caplog.text


def test_an_unseen_product_is_answered_from_its_history_for_weeks_then_dropped(
    store: LocalStore,
) -> None:
    drop_week(store, 0)
    train_model.main(store, max_carry_weeks=3)
    for n in (1, 2, 3):
        drop_week(store, n, without=["SKU001"])
        train_model.main(store, max_carry_weeks=3)
        loaded = load_newest_model(store)
        at = loaded.model.position("SKU001")
        assert at >= 0 and loaded.model.catalogue.weeks_missing[at] == n
        state = read_state(store, loaded.metadata).products
        assert state.weeks_unseen[state.codes.find("SKU001")] == n
    drop_week(store, 4, without=["SKU001"])
    train_model.main(store, max_carry_weeks=3)
    dropped = load_newest_model(store)
    assert not dropped.model.knows("SKU001")
    assert "SKU001" not in read_state(store, dropped.metadata).products.codes.tolist()
    with TestClient(create_app(lambda: dropped)) as client:
        gone = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 9})
    assert gone.status_code == 422
    assert gone.json()["detail"][0]["type"] == "dropped_product_code"
    assert "in the last 3 weekly tranche(s)" in gone.json()["detail"][0]["msg"]


def test_history_off_fits_the_newest_tranche_alone_as_before(store: LocalStore) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1, without=["SKU030"])
    train_model.main(store, history="off")
    loaded = load_newest_model(store)
    assert history(loaded)["mode"] == "off" and history(loaded)["began"] == "off"
    raw = generate_dataset.generate_tranche(3000, 40, seed=2, zipf=1.1).data
    split = split_by_product(raw[raw[PRODUCT] != "SKU030"].reset_index(drop=True))
    alone = PooledLinearRegressor().fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS])
    fitted = len(alone.product_codes_)
    assert loaded.model.product_codes.take(np.arange(fitted)) == alone.product_codes_
    assert np.allclose(loaded.model.intercepts[:fitted], alone.intercepts_, rtol=0, atol=1e-9)
    assert np.allclose(loaded.model.slopes[:fitted], alone.slopes_, rtol=0, atol=1e-12)
    live = load_model(store, first).model  # the carried product keeps the live line
    assert loaded.model.predict_one("SKU030", 50) == live.predict_one("SKU030", 50)


def upgraded_store(tmp_path: Path) -> LocalStore:
    """A copy of a store the release before history published two weeks into."""
    shutil.copytree(FIXTURE / "models", tmp_path / "store" / "models")
    return LocalStore(tmp_path / "store")


def test_models_of_the_release_before_history_answer_as_that_release_did(tmp_path: Path) -> None:
    store = upgraded_store(tmp_path)
    answers = json.loads((FIXTURE / "answers.json").read_text())
    assert sorted(answers) == published_versions(store)[::-1]
    for version, products in answers.items():
        loaded = load_model(store, version)
        with TestClient(create_app(lambda: loaded)) as client:
            for code, expected in products.items():
                for x, hours, promise in zip((0, 1, 50, 112, 320), expected["estimates"],
                                             expected["promises"]):
                    body = {"product_code": code, "orders_placed": x, "promise_probability": 0.9}
                    answer = client.post(API_PATH, json=body).json()
                    assert answer["est_hours_to_dispatch"] == hours
                    assert answer["promise_hours_to_dispatch"] == promise


def test_the_first_run_after_the_upgrade_starts_from_the_live_models_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = upgraded_store(tmp_path)
    live = published_versions(store)[0]
    drop_week(store, 2)
    new = load_model(store, train_model.main(store))
    assert history(new)["began"] == f"model {live}" and history(new)["weeks"] == 2
    assert "started_from" not in history(new)
    assert f"No state to learn from: starting from model {live}'s lines" in caplog.text
    assert new.model.knows("SKU040")  # carried by the release before, still answered
    drop_week(store, 3)
    after = load_newest_model(store)
    assert after.metadata.model_version == new.metadata.model_version
    assert history(load_model(store, train_model.main(store)))["began"] == "state"


def test_a_rollback_learns_from_the_pinned_models_state(store: LocalStore) -> None:
    for n in range(3):
        drop_week(store, n)
        train_model.main(store)
    _, pinned, _ = published_versions(store)[::-1]
    drop_week(store, 3)
    version = train_model.main(store, live_version=pinned)
    assert history(load_model(store, version))["started_from"] == state_key(pinned)


def test_a_wrong_week_replaced_by_pinning_the_model_before_it_is_never_learned(
    tmp_path: Path,
) -> None:
    """docs/operating.md: a tranche accepted, then corrected by the data team. Pinning the
    model before it and dropping the corrected file gives the model a store that only ever
    had the corrected week would give."""
    corrected = generate_dataset.generate_tranche(3000, 40, seed=9, zipf=1.1).data
    stores = [LocalStore(tmp_path / name) for name in ("replaced", "clean")]
    for store in stores:
        drop_week(store, 0)
    first = train_model.main(stores[0])
    train_model.main(stores[1])
    drop_week(stores[0], 1)  # accepted and published, then found wrong
    train_model.main(stores[0])
    put_tranche(stores[0], corrected, FIRST_WEEK + timedelta(weeks=1, hours=14))
    replaced = train_model.main(stores[0], live_version=first)
    put_tranche(stores[1], corrected, FIRST_WEEK + timedelta(weeks=1, hours=14))
    clean = train_model.main(stores[1])
    ours, theirs = load_model(stores[0], replaced), load_model(stores[1], clean)
    assert history(ours)["started_from"] == state_key(first) and history(ours)["weeks"] == 2
    assert ours.model.product_codes == theirs.model.product_codes
    assert np.array_equal(ours.model.slopes, theirs.model.slopes)
    assert np.array_equal(ours.model.intercepts, theirs.model.intercepts)


def test_after_a_refused_week_the_next_run_starts_from_the_last_published_state(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1, rows=600)  # truncated: under half the rows of last week
    with pytest.raises(train_model.TrainingRefused):
        train_model.main(store)
    drop_week(store, 2)
    version = train_model.main(store)
    assert history(load_model(store, version))["started_from"] == state_key(first)
    assert "(40 products, 2 week(s) before this one)" in caplog.text


@pytest.mark.parametrize("fault", ["altered", "missing"])
def test_a_state_altered_or_missing_is_named_and_the_run_starts_from_the_live_models_lines(
    store: LocalStore, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    path = store.root / state_key(first)
    if fault == "altered":
        path.write_bytes(path.read_bytes() + b"\0")
    else:
        path.unlink()
    drop_week(store, 1)
    version = train_model.main(store)
    assert history(load_model(store, version))["began"] == f"model {first}"
    said = "SHA-256 differs" if fault == "altered" else "cannot be read"
    assert f"cannot learn from model {first}'s state" in caplog.text and said in caplog.text


def test_a_forced_rerun_of_the_live_week_learns_from_the_state_before_it(
    store: LocalStore,
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1)
    second = train_model.main(store)
    again = train_model.main(store, force=True)
    assert history(load_model(store, again))["started_from"] == state_key(first)
    lines = [load_model(store, v).model for v in (second, again)]
    assert np.allclose(lines[0].slopes, lines[1].slopes)  # the same week, learned once


def test_a_state_is_plain_arrays_read_back_as_written(store: LocalStore) -> None:
    drop_week(store, 0)
    version = train_model.main(store)
    data = (store.root / state_key(version)).read_bytes()
    state = parse_state(data)
    assert b"pickle" not in data[:200] and len(state.products.codes) == 40
    assert state.products.mean.shape == (40, 2) and (state.products.weeks_seen == 1).all()
    with pytest.raises(ValueError, match="not a state file"):
        parse_state(b"not numpy at all")


def test_the_review_shows_rare_products_promises_narrower_than_this_weeks_rows_alone_give(
    store: LocalStore,
) -> None:
    for n in range(4):
        drop_week(store, n, rows=2000, skus=400)
        version = train_model.main(store)
    loaded = load_model(store, version)
    bands = {b["band"]: b for b in loaded.metadata.model_extra["popularity"]}  # type: ignore[index]  # noqa: E501
    rare = bands["1-2"]
    assert rare["products"] > 50 and rare["width"] < rare["width_alone"]
    assert bands["50+"]["width"] == pytest.approx(bands["50+"]["width_alone"], rel=0.1)
    report = (store.root / f"models/time_to_dispatch_model_{version}_report.html").read_text()
    assert 'id="popularity"' in report and "learned from 4 weekly tranche(s)" in report
