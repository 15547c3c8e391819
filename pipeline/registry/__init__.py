"""Where models live: the store (S3 or a local folder laid out alike), published models and
their metadata, and the leftovers of runs that died."""
