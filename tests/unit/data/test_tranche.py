from datetime import datetime
from typing import Optional

import pytest

from pipeline.data.tranche import (
    dated_tranche_keys,
    timestamp_in_key,
    tranche_key,
    undated_csv_keys,
)


@pytest.mark.parametrize(
    "key, expected",
    [
        ("datasets/time_to_dispatch_2021-07-09T23:00:00.csv", datetime(2021, 7, 9, 23)),
        ("datasets/time_to_dispatch_2021-07-09.csv", datetime(2021, 7, 9)),
        ("datasets/time_to_dispatch_2021-07-01T16|45|38.csv", datetime(2021, 7, 1, 16, 45, 38)),
        ("datasets/x_2021-07-01T16-45-38.123.csv", datetime(2021, 7, 1, 16, 45, 38, 123000)),
        ("datasets/2020-01-01/time_to_dispatch_2021-07-09.csv", datetime(2021, 7, 9)),
        ("datasets/time_to_dispatch_20210716.csv", datetime(2021, 7, 16)),
        ("datasets/time_to_dispatch_20210716T230000.csv", datetime(2021, 7, 16, 23)),
        ("datasets/export_123456789.csv", None),
        ("datasets/time_to_dispatch_20211340.csv", None),
        ("datasets/time_to_dispatch.csv", None),
        ("datasets/time_to_dispatch_2021-13-45.csv", None),
    ],
)
def test_timestamp_in_key_reads_every_form_the_data_team_has_used(
    key: str, expected: Optional[datetime]
) -> None:
    assert timestamp_in_key(key) == expected


def test_newest_tranche_is_chosen_by_the_date_in_its_name_whatever_the_listing_order() -> None:
    keys = [
        "datasets/time_to_dispatch_2021-07-09T23:00:00.csv",
        "datasets/time_to_dispatch_2021-07-16.csv",
        "datasets/time_to_dispatch_2021-07-01T16|45|38.csv",
        "datasets/notes.txt",
        "datasets/time_to_dispatch_2099-01-01.parquet",
        "datasets/undated.csv",
    ]
    dated = dated_tranche_keys(keys)
    assert [d.key for d in dated] == [
        "datasets/time_to_dispatch_2021-07-01T16|45|38.csv",
        "datasets/time_to_dispatch_2021-07-09T23:00:00.csv",
        "datasets/time_to_dispatch_2021-07-16.csv",
    ]


def test_tranche_key_round_trips_through_timestamp_in_key() -> None:
    when = datetime(2021, 7, 9, 23, 0, 0)
    assert tranche_key(when) == "datasets/time_to_dispatch_2021-07-09T23:00:00.csv"
    assert timestamp_in_key(tranche_key(when)) == when


def test_csvs_whose_names_carry_no_readable_date_are_listed_to_be_named() -> None:
    keys = [
        "datasets/orders_export.csv",
        "datasets/time_to_dispatch_20210716.csv",
        "datasets/time_to_dispatch_2021-13-45.csv",
        "datasets/readme.txt",
    ]
    assert undated_csv_keys(keys) == [
        "datasets/orders_export.csv", "datasets/time_to_dispatch_2021-13-45.csv"
    ]
