"""Prometheus metrics of the service: traffic, estimates, refusals, and the model served
(its version, age, and how often its promises held on held-out orders).

Each app has its own registry, so two apps in one process (tests) never mix their counts.
The per-request path is kept cheap: label children are looked up once and cached, and the
middleware is pure ASGI (no request object, no extra task). Estimates are counted by a
collector of our own, so that a batch of 10,000 is one numpy pass rather than 10,000
`Histogram.observe` calls (which would cost more than estimating them).
"""
import threading
import time
from bisect import bisect_left
from datetime import datetime
from itertools import accumulate
from wsgiref.simple_server import WSGIServer
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric

from pipeline.registry.metadata import ModelMetadata
from pipeline.service.middleware.asgi import ASGIApp, Message, Receive, Scope, Send

# Estimates run from 0 to about 60 hours; finer where most orders fall. Exposed in seconds,
# Prometheus' base unit (`promtool check metrics` refuses hours): a dashboard divides by 3600.
HOURS_BUCKETS = (0.5, 1, 2, 4, 8, 12, 16, 24, 36, 48, 72, 96)
ESTIMATE_BUCKETS = tuple(3600.0 * hours for hours in HOURS_BUCKETS)
# An estimate takes well under a millisecond in-process; the tail is what matters.
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Every refusal is counted under one of these reasons, so the label stays bounded.
REFUSAL_REASONS = (
    "unknown_product",
    "dropped_product",
    "out_of_range",
    "bad_product_code",
    "missing_field",
    "extra_field",
    "wrong_type",
    "invalid_json",
    "unreadable_body",
    "body_too_large",
    "not_json",
    "batch_size",
    "other",
)
_REASON_BY_ERROR_TYPE = {
    "unknown_product_code": "unknown_product",
    "dropped_product_code": "dropped_product",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than": "out_of_range",
    "finite_number": "out_of_range",
    "string_too_short": "bad_product_code",
    "string_too_long": "bad_product_code",
    "missing": "missing_field",
    "extra_forbidden": "extra_field",
    "json_invalid": "invalid_json",
    "too_short": "batch_size",
    "too_long": "batch_size",
}
# What the HTTP server turns away or closes under overload (pipeline/service/server/):
# a body beyond the memory budget (503), a connection beyond the cap (503), and a connection
# stalled before its request headers, closed to make room at the cap.
OVERLOAD_REASONS = ("body_budget", "connection_cap", "stalled_closed")
# Refusals made by the request guard before FastAPI sees the request, known by status.
_REASON_BY_STATUS = {400: "unreadable_body", 413: "body_too_large", 415: "not_json"}


def refusal_reason(error_type: str) -> str:
    """Map a 422's error `type` to a refusal reason (wrong types of any kind are one)."""
    if error_type in _REASON_BY_ERROR_TYPE:
        return _REASON_BY_ERROR_TYPE[error_type]
    if error_type.endswith(("_type", "_parsing")):
        return "wrong_type"
    return "other"


def created_timestamp(metadata: ModelMetadata) -> Optional[float]:
    """Return when the model was trained, in Unix seconds (None if unreadable)."""
    try:
        created = datetime.fromisoformat(metadata.created_at)
    except ValueError:
        return None
    return created.timestamp() if created.tzinfo else None


def orders_range(metadata: ModelMetadata) -> Optional[Tuple[float, float]]:
    """Return the lowest and highest orders_placed the model was trained on, if recorded."""
    profile = metadata.profile() or {}
    quantiles: Sequence[float] = (profile.get("orders_placed") or {}).get("quantiles") or ()
    if len(quantiles) < 2:
        return None
    return float(quantiles[0]), float(quantiles[-1])


class EstimateHistogram:
    """A Prometheus histogram of estimates (in seconds) by model version that counts many at once.

    Exposed exactly as prometheus-client's Histogram (`_bucket` with `le`, `_count`, `_sum`),
    without `_created`. Bucket counts are kept per bucket (not cumulative) and summed at
    scrape time; a lock keeps a scrape from seeing half a batch.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(float(b) for b in buckets)
        self._bounds_array = np.asarray(self.bounds)
        # As prometheus-client writes `le` for bounds like these: 0.5, 1.0, 24.0.
        self._les = [repr(b) for b in self.bounds] + ["+Inf"]
        self._series: Dict[str, Tuple[List[int], List[float]]] = {}  # counts, [sum]
        self._lock = threading.Lock()
        registry.register(self)

    def series(self, model_version: str) -> None:
        """Expose this version's histogram from zero, before its first estimate."""
        with self._lock:
            self._series.setdefault(model_version, ([0] * len(self._les), [0.0]))

    def observe(self, model_version: str, seconds: float) -> None:
        counts, total = self._series[model_version]
        with self._lock:
            counts[bisect_left(self.bounds, seconds)] += 1  # le: seconds <= bound
            total[0] += seconds

    def observe_many(self, model_version: str, seconds: np.ndarray) -> None:
        """Count every estimate of a batch in one pass."""
        bins = np.searchsorted(self._bounds_array, seconds, side="left")
        added = np.bincount(bins, minlength=len(self._les)).tolist()
        added_sum = float(seconds.sum())
        counts, total = self._series[model_version]
        with self._lock:
            for i, n in enumerate(added):
                counts[i] += n
            total[0] += added_sum

    def describe(self) -> List[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=["model_version"])]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["model_version"])
        with self._lock:
            snapshot = [(v, list(c), t[0]) for v, (c, t) in self._series.items()]
        for version, counts, total in snapshot:
            cumulative = list(accumulate(counts))
            family.add_metric([version], list(zip(self._les, cumulative)), total)
        yield family


class ServiceMetrics:
    """The service's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttd_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.duration = Histogram(
            "ttd_http_request_duration_seconds", "Time to answer, by route, method and status",
            ["route", "method", "status"], buckets=SECONDS_BUCKETS, registry=self.registry,
        )
        self.estimates = EstimateHistogram(
            "ttd_estimate_seconds", "Estimates served (time to dispatch), by model version",
            buckets=ESTIMATE_BUCKETS, registry=self.registry,
        )
        self.refusals = Counter(
            "ttd_refusals", "Estimate requests refused (4xx), by reason",
            ["reason"], registry=self.registry,
        )
        self.overload = Counter(
            "ttd_http_overload",
            "Requests refused (503) and stalled connections closed under overload, by reason",
            ["reason"], registry=self.registry,
        )
        self.body_bytes = Gauge(
            "ttd_http_request_body_bytes",
            "Request body bytes held in memory now (limit: TTD_HTTP_BODY_BUDGET_BYTES)",
            registry=self.registry,
        )
        self.extrapolated = Counter(
            "ttd_extrapolated_requests",
            "Estimates for an orders_placed outside the range the model was trained on",
            ["side"], registry=self.registry,
        )
        self.model_info = Gauge(
            "ttd_model_info", "The model served: always 1, its facts in the labels",
            ["model_version", "tranche", "created_at"], registry=self.registry,
        )
        self.model_age = Gauge(
            "ttd_model_age_seconds", "Time since the served model was trained",
            registry=self.registry,
        )
        self.promise_coverage = Gauge(
            "ttd_model_promise_coverage_ratio",
            "Share of the served model's held-out orders dispatched within their promise at "
            "0.9, measured at training on rows that did not calibrate it (absent: no promises)",
            ["model_version"], registry=self.registry,
        )
        self.serving_newest = Gauge(
            "ttd_serving_newest_model",
            "1 if the newest published model is the one served; 0 if it was skipped or pinned",
            registry=self.registry,
        )
        # Create every reason's series now, so rate() and alerts see a 0 before the first one.
        self._refused = {reason: self.refusals.labels(reason) for reason in REFUSAL_REASONS}
        self._overloaded = {reason: self.overload.labels(reason) for reason in OVERLOAD_REASONS}
        self._above = self.extrapolated.labels("above")
        self._below = self.extrapolated.labels("below")
        self._observed: Dict[Tuple[str, str, int], Tuple[Any, Any]] = {}
        self._version: Optional[str] = None
        self._range: Optional[Tuple[float, float]] = None

    def set_model(self, metadata: ModelMetadata, serving_newest: bool) -> None:
        """Describe the model now served: its info, age, range, promise coverage and whether it
        is the newest."""
        tranche = metadata.dataset_section().key or ""
        self.model_info.clear()
        self.model_info.labels(metadata.model_version, tranche, metadata.created_at).set(1)
        created = created_timestamp(metadata)
        if created is not None:
            self.model_age.set_function(lambda: time.time() - created)
        self.serving_newest.set(1 if serving_newest else 0)
        self.promise_coverage.clear()
        coverage = metadata.metrics.get("promise_coverage")
        if coverage is not None and coverage == coverage:  # absent rather than NaN or 0
            self.promise_coverage.labels(metadata.model_version).set(coverage)
        self._version = metadata.model_version
        self.estimates.series(metadata.model_version)
        self._range = orders_range(metadata)

    def estimate(self, hours: float, orders_placed: float) -> None:
        """Count one estimate served, and whether its queue lay beyond the training data."""
        if self._version is not None:
            self.estimates.observe(self._version, hours * 3600.0)
        if self._range is not None:
            if orders_placed > self._range[1]:
                self._above.inc()
            elif orders_placed < self._range[0]:
                self._below.inc()

    def estimate_many(self, hours: np.ndarray, orders_placed: np.ndarray) -> None:
        """Count a batch of estimates as `estimate` counts each, in a few numpy passes."""
        if self._version is not None:
            self.estimates.observe_many(self._version, hours * 3600.0)
        if self._range is not None:
            above = int(np.count_nonzero(orders_placed > self._range[1]))
            below = int(np.count_nonzero(orders_placed < self._range[0]))
            if above:
                self._above.inc(above)
            if below:
                self._below.inc(below)

    def refuse(self, reason: str) -> None:
        self._refused.get(reason, self._refused["other"]).inc()

    def overloaded(self, reason: str) -> None:
        """Count one refusal or closure by the HTTP server under overload."""
        self._overloaded[reason].inc()

    def watch_body_bytes(self, held: Callable[[], float]) -> None:
        """Report the HTTP server's count of request body bytes in memory."""
        self.body_bytes.set_function(held)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its duration (label children cached: no per-call lookup)."""
        key = (route, method, status)
        children = self._observed.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.duration.labels(*labels))
            self._observed[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def start_metrics_server(metrics: ServiceMetrics, host: str, port: int) -> WSGIServer:
    """Serve the metrics on a port of their own, from a daemon thread; return its server.

    prometheus-client's own server, so the HTTP server of the API is left alone; scrapes are
    rare (every 15 to 60 s) and read counters under their locks. It answers any path, and
    ends with the process.
    """
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return server


class MetricsMiddleware:
    """Count every HTTP request by route template, method and status, and time it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, guarded_paths: Sequence[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.guarded_paths = frozenset(guarded_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router leaves the matched route in the scope: its template, never the raw
            # path, so the label stays bounded whatever paths clients invent.
            path = scope["path"]
            route = getattr(scope.get("route"), "path", None) or (
                path if path in self.guarded_paths else "unmatched"
            )
            self.metrics.request(route, scope["method"], status, time.perf_counter() - start)
            if status in (413, 415) and path in self.guarded_paths:
                self.metrics.refuse(_REASON_BY_STATUS[status])
