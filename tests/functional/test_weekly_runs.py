"""Two weeks in a row as the weekly job runs them, on the local store and on real S3."""
import json
from datetime import datetime
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest

from pipeline import generate_dataset
from pipeline.registry.published import metadata_key, published_versions
from pipeline.registry.store import Store, open_store
from tests.processes import run_stage, stage_env


class WeeklyStore(NamedTuple):
    uri: str
    store: Store
    env: Dict[str, str]


@pytest.fixture(params=["local", "s3"])
def weekly(request: pytest.FixtureRequest, tmp_path: Path) -> WeeklyStore:
    if request.param == "local":
        uri = str(tmp_path / "artifacts")
        return WeeklyStore(uri, open_store(uri), stage_env())
    s3_env: Dict[str, str] = request.getfixturevalue("s3_env")
    uri = f"s3://{request.getfixturevalue('bucket')}/weekly"
    return WeeklyStore(uri, open_store(uri), stage_env(s3_env))


def train(weekly: WeeklyStore, *args: str) -> "tuple[int, str]":
    result = run_stage(["-m", "pipeline.train_model", weekly.uri, *args], env=weekly.env)
    return result.returncode, result.stderr


def metadata(weekly: WeeklyStore, version: str) -> Dict[str, object]:
    loaded: Dict[str, object] = json.loads(weekly.store.get_bytes(metadata_key(version)))
    return loaded


def two_weeks(weekly: WeeklyStore) -> List[str]:
    generate_dataset.main(weekly.store, 3000, 20, datetime(2021, 7, 9, 23), seed=1, zipf=1.1)
    code, log = train(weekly)
    assert code == 0, log
    generate_dataset.main(
        weekly.store, 3000, 20, datetime(2021, 7, 16, 23), seed=2, zipf=1.1,
        quirks=["spaces", "outlier", "crlf"],
    )
    return published_versions(weekly.store)


def test_the_second_weeks_model_carries_the_comparison_with_the_first(
    weekly: WeeklyStore,
) -> None:
    [first] = two_weeks(weekly)
    code, log = train(weekly)
    assert code == 0, log
    second = published_versions(weekly.store)[0]
    comparison = metadata(weekly, second)["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["live_version"] == first
    assert comparison["new_mae"] <= comparison["live_mae"] * 1.05
    assert f"Champion {first}" in log and "dropped 1 gross outlier" in log


def test_a_worse_challenger_is_refused_and_force_publishes_it(weekly: WeeklyStore) -> None:
    [first] = two_weeks(weekly)
    # One line for every product (this week's rows alone: with the history, products keep
    # their own lines): worse than the live model, and so bad that the R² gate would refuse
    # it too, unless lowered so that only the champion gate judges it.
    worse = ("--prior-scale", "0", "--history", "off", "--r2-error-threshold", "0",
             "--r2-warning-threshold", "0")
    code, log = train(weekly, *worse)
    assert code == 1
    assert "Traceback" not in log
    assert f"worse than the live model {first}'s" in log and "nothing was published" in log
    assert published_versions(weekly.store) == [first]

    code, log = train(weekly, *worse, "--force")
    assert code == 0, log
    forced = published_versions(weekly.store)[0]
    assert forced != first
    assert "publishing anyway, as --force asks" in log
    assert metadata(weekly, forced)["thresholds"]["forced"] is True  # type: ignore[index]
