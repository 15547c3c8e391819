"""The HTTP service, in-process."""
