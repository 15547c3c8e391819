"""What every stage's command line shares: --help, the store argument, one-line failures."""
import argparse
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from pipeline.settings import Settings, SettingsError, describe_variables, read_settings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default, and keep the epilog's list of variables one per line."""


def build_parser(description: str) -> argparse.ArgumentParser:
    """Return a stage's parser: defaults shown in --help, the TTD_* variables listed below."""
    return argparse.ArgumentParser(
        description=description, formatter_class=HelpFormatter, epilog=describe_variables()
    )


def stage_settings(log: logging.Logger) -> Settings:
    """Read the TTD_* settings; a bad value is one ERROR line naming the variable, exit 1."""
    try:
        return read_settings()
    except SettingsError as exc:
        log.error("%s", exc)
        sys.exit(1)


def add_store_argument(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """Add the optional STORE positional, defaulting to $TTD_STORE, then ./artifacts."""
    parser.add_argument(
        "store",
        nargs="?",
        default=settings.store,
        help="s3://bucket[/prefix] or a local folder; $TTD_STORE sets the default",
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
