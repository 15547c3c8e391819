"""Fixtures shared by unit and functional tests: small generated tranches and stores."""
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from pipeline import train_model
from pipeline.generate_dataset import generate_tranche, to_csv_bytes
from pipeline.registry.published import LoadedModel, load_newest_model
from pipeline.registry.store import LocalStore
from pipeline.data.tranche import tranche_key

TRANCHE_DATE = datetime(2021, 7, 9, 23, 0, 0)


def put_tranche(store: LocalStore, data: pd.DataFrame, when: datetime = TRANCHE_DATE) -> str:
    """Drop a tranche into a store as the data team would, returning its key."""
    key = tranche_key(when)
    store.put_new(key, to_csv_bytes(data))
    return key


@pytest.fixture
def tranche() -> pd.DataFrame:
    return generate_tranche(rows=1000, skus=5, seed=7).data


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def store_with_tranche(store: LocalStore, tranche: pd.DataFrame) -> LocalStore:
    put_tranche(store, tranche)
    return store


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """One model (1,000 rows of 5 products) per test module, for tests that only read it."""
    store = LocalStore(tmp_path_factory.mktemp("trained") / "store")
    put_tranche(store, generate_tranche(rows=1000, skus=5, seed=7).data)
    train_model.main(store)
    return load_newest_model(store)
