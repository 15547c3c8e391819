"""What every stage's command line shares: the store argument and one-line failures."""
import argparse
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from pipeline.settings import DEFAULT_STORE, Settings


def add_store_argument(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """Add the optional STORE positional, defaulting to $TTD_STORE, then ./artifacts."""
    parser.add_argument(
        "store",
        nargs="?",
        default=settings.store,
        help=f"s3://bucket[/prefix] or a local folder (default: $TTD_STORE or {DEFAULT_STORE})",
    )


@contextmanager
def exit_on_failure(log: logging.Logger, settings: Settings) -> Iterator[None]:
    """Turn any failure into one ERROR line and exit code 1: operators read logs, not traces.

    Set TTD_DEBUG=1 to get the traceback as well.
    """
    try:
        yield
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - this is the one place that catches everything
        log.error("%s", exc, exc_info=settings.debug)
        sys.exit(1)
