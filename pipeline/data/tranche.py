"""What a tranche is: its columns and how its key in the store carries its date.

Shared by every stage, so that training, serving and the generator agree on names.
"""
import re
from datetime import datetime
from typing import Iterable, List, NamedTuple, Optional

HOURS = "hours_to_dispatch"
ORDERS = "orders_placed"
PRODUCT = "product_code"
COLUMNS = (HOURS, ORDERS, PRODUCT)
MAX_PRODUCT_CODE_LENGTH = 64  # the catalogue's longest code is far shorter

DATASETS_PREFIX = "datasets/"
TRANCHE_STEM = "time_to_dispatch_"

# An ISO date, optionally followed by a time whose separators may be ':' (ISO), '|' (the
# older drops, e.g. 2021-07-01T16|45|38) or '-' (file-system friendly).
_DATE_IN_KEY = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T_ ](?P<h>\d{2})[:|\-](?P<m>\d{2})[:|\-](?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?)?"
)


# The compact (basic ISO 8601) form some drops use: 20210716 or 20210716T230000, standing
# alone so that a longer run of digits (an export id) is never taken for a date.
_COMPACT_DATE_IN_KEY = re.compile(
    r"(?<!\d)(?P<date>\d{8})(?:T(?P<h>\d{2})(?P<m>\d{2})(?P<s>\d{2}))?(?!\d)"
)


class DatedKey(NamedTuple):
    key: str
    timestamp: datetime


def timestamp_in_key(key: str) -> Optional[datetime]:
    """Return the date-time a tranche key carries, or None when it carries none."""
    name = key.rsplit("/", 1)[-1]
    match = None
    for match in _DATE_IN_KEY.finditer(name):
        pass  # the last date in the name wins: prefixes may carry dates of their own
    day_format = "%Y-%m-%d"
    if match is None:
        for match in _COMPACT_DATE_IN_KEY.finditer(name):
            pass
        day_format = "%Y%m%d"
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group("date"), day_format)
        if match.group("h") is None:
            return day
        frac = match.groupdict().get("frac") or "0"
        micro = int(frac.ljust(6, "0"))
        return day.replace(
            hour=int(match.group("h")),
            minute=int(match.group("m")),
            second=int(match.group("s")),
            microsecond=micro,
        )
    except ValueError:  # e.g. 2021-13-40: looks like a date, is not one
        return None


def dated_tranche_keys(keys: Iterable[str]) -> List[DatedKey]:
    """Return the CSV keys that carry a date, oldest first (ties broken by key)."""
    dated = []
    for key in keys:
        if not key.lower().endswith(".csv"):
            continue
        stamp = timestamp_in_key(key)
        if stamp is not None:
            dated.append(DatedKey(key, stamp))
    return sorted(dated, key=lambda d: (d.timestamp, d.key))


def undated_csv_keys(keys: Iterable[str]) -> List[str]:
    """Return the CSV keys whose name carries no date this code can read (never trained on)."""
    return sorted(
        key for key in keys if key.lower().endswith(".csv") and timestamp_in_key(key) is None
    )


def tranche_key(timestamp: datetime) -> str:
    """Return the key a tranche dropped at this time is stored under."""
    return f"{DATASETS_PREFIX}{TRANCHE_STEM}{timestamp.strftime('%Y-%m-%dT%H:%M:%S')}.csv"
