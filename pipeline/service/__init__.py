"""The HTTP service: the API's contract, the estimate endpoints' fast path, the server's
limits, and the metrics."""
