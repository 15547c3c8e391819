"""What every stage's command line shares: --help, the store argument, one-line failures."""
import argparse
import logging
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Type, Union

from pipeline.settings import Settings, SettingsError, describe_variables, read_settings

Number = Union[int, float]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default, and keep the epilog's list of variables one per line."""


def build_parser(description: str) -> argparse.ArgumentParser:
    """Return a stage's parser: defaults shown in --help, the TTD_* variables listed below."""
    return argparse.ArgumentParser(
        description=description, formatter_class=HelpFormatter, epilog=describe_variables()
    )


def number_in(
    low: Number, high: Number, what: str, kind: Type[Number] = float
) -> Callable[[str], Number]:
    """Return an argparse type that accepts a number in [low, high] and names the range."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what} is a number, got {text!r}") from exc
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{what} lies in [{low}, {high}], got {value}")
        return value

    return parse


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
