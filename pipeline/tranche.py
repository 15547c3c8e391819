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


class DatedKey(NamedTuple):
    key: str
    timestamp: datetime


def timestamp_in_key(key: str) -> Optional[datetime]:
    """Return the date-time a tranche key carries, or None when it carries none."""
    name = key.rsplit("/", 1)[-1]
    match = None
    for match in _DATE_IN_KEY.finditer(name):
        pass  # the last date in the name wins: prefixes may carry dates of their own
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group("date"), "%Y-%m-%d")
        if match.group("h") is None:
            return day
        micro = int((match.group("frac") or "0").ljust(6, "0"))
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


def tranche_key(timestamp: datetime) -> str:
    """Return the key a tranche dropped at this time is stored under."""
    return f"{DATASETS_PREFIX}{TRANCHE_STEM}{timestamp.strftime('%Y-%m-%dT%H:%M:%S')}.csv"
