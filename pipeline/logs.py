"""Logging set-up shared by every stage, so all lines look alike in Kubernetes logs."""
import logging

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(module)s.%(funcName)s - %(message)s"


def configure_logger(name: str) -> logging.Logger:
    """Return a logger that prints each line once, in the pipeline's format.

    Guarded so that calling it again (tests, re-imports) never adds a second handler.
    """
    logger = logging.getLogger(name)
    if not any(getattr(h, "_ttd_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, "_ttd_handler", True)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
