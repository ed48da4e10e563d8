"""Prometheus metrics of the inference server (docs/metrics.md, "Requests and latency" and
"Model and catalog state").

Event metrics (counters, histograms) live in `ServerMetrics` on an explicit `CollectorRegistry`.
State that already exists elsewhere (loaded versions, queue depth, catalog size) is read at scrape
time by `ServingStateCollector`, so an unloaded version's gauges disappear with it and nothing can
go stale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # pragma: no cover
    from inference_server.serving.state import ServingState

__all__ = [
    "ENDPOINTS",
    "LATENCY_BUCKETS",
    "ServerMetrics",
    "ServingStateCollector",
    "render_metrics",
]

ENDPOINTS = ("search", "rank", "recommend", "feedback", "models", "admin", "alerts", "other")
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
TOKEN_BUCKETS = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512)
MODEL_ERROR_REASONS = ("exception", "non_finite_output", "timeout")
SHED_REASONS = ("queue_full", "deadline", "queue_time", "late")  # serving.admission.SHED_REASONS


class ServerMetrics:
    """The event metrics of one server instance, registered on `registry`."""

    def __init__(self, registry: Optional[CollectorRegistry] = None, *, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.requests = Counter(
            "inference_requests_total",
            "Finished requests by endpoint, model version and HTTP status.",
            ["endpoint", "model", "version", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "inference_request_duration_seconds",
            "Time in the server from request in to response out.",
            ["endpoint", "model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "inference_queue_duration_seconds",
            "Time a request's encoding work waited in the batch queue.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "inference_compute_duration_seconds",
            "Model execution time of one batch (tokenise, forward, pool).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "inference_batch_size",
            "Texts per executed batch.",
            ["model", "version"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.request_tokens = Histogram(
            "inference_request_tokens",
            "Tokens per encoded text (including special tokens, after truncation).",
            ["model", "version"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "inference_requests_in_flight",
            "Requests being handled now.",
            ["endpoint"],
            registry=r,
        )
        self.rejected = Counter(
            "inference_rejected_requests_total",
            "Requests answered with 4xx/429/503/504, by reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.model_errors = Counter(
            "inference_model_errors_total",
            "Failures while executing the model, by reason.",
            ["model", "version", "reason"],
            registry=r,
        )
        self.admitted = Counter(
            "inference_admission_admitted_total",
            "Requests whose encoding work the batch queue admitted.",
            ["model", "version"],
            registry=r,
        )
        self.shed = Counter(
            "inference_admission_shed_total",
            "Requests shed by admission control (429/503 with Retry-After), by reason.",
            ["model", "version", "reason"],
            registry=r,
        )
        self.predicted_wait = Histogram(
            "inference_admission_predicted_wait_seconds",
            "Queue wait predicted from the measured service rate when a request arrives.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wasted_compute = Counter(
            "inference_wasted_compute_seconds_total",
            "Model compute spent on texts whose request had already failed (deadline passed, client gone).",
            ["model", "version"],
            registry=r,
        )
        self.request_log_errors = Counter(
            "inference_request_log_errors_total",
            "Request-log records that could not be written (e.g. the file became unwritable).",
            registry=r,
        )
        self.connections_refused = Counter(
            "inference_connections_refused_total",
            "Connections answered with a canned 503 because server.max_connections were open.",
            registry=r,
        )
        for endpoint in ENDPOINTS:
            self.in_flight.labels(endpoint)
        self._children: dict[tuple, object] = {}

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, remembered: the per-request path skips prometheus_client's label
        validation and lock (measured: ~8 % of the event loop under overload). Safe because no series is
        ever removed from these metrics, and bounded because every label here is."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def init_version(self, model: str, version: str) -> None:
        """Create a version's zero-valued error series so rate() works before the first error."""
        for reason in MODEL_ERROR_REASONS:
            self.model_errors.labels(model, version, reason)
        for reason in SHED_REASONS:
            self.shed.labels(model, version, reason)


class ServingStateCollector(Collector):
    """Model and catalog state gauges, read from the serving state at scrape time."""

    def __init__(self, state_provider: Callable[[], Optional["ServingState"]]) -> None:
        self._state_provider = state_provider

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        """The (static) families this collector exports, empty."""
        info = GaugeMetricFamily(
            "inference_model_info",
            "What is loaded (value 1).",
            labels=["model", "version", "backend", "device", "dtype"],
        )
        ready = GaugeMetricFamily(
            "inference_model_ready", "1 when loaded, health-checked and warmed up.", labels=["model", "version"]
        )
        load = GaugeMetricFamily(
            "inference_model_load_duration_seconds", "Time to load the weights.", labels=["model", "version"]
        )
        warmup = GaugeMetricFamily(
            "inference_model_warmup_duration_seconds", "Time of the warm-up passes.", labels=["model", "version"]
        )
        depth = GaugeMetricFamily(
            "inference_queue_depth", "Texts waiting in the batch queue.", labels=["model", "version"]
        )
        capacity = GaugeMetricFamily(
            "inference_queue_capacity", "max_queue_size of the batch queue.", labels=["model", "version"]
        )
        products = GaugeMetricFamily(
            "inference_catalog_products", "Products in the index.", labels=["catalog"]
        )
        build = GaugeMetricFamily(
            "inference_index_build_duration_seconds",
            "Time to build (or load from cache) the catalog embeddings.",
            labels=["catalog"],
        )
        return [info, ready, load, warmup, depth, capacity, products, build]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        info, ready, load, warmup, depth, capacity, products, build = self._families()
        state = self._state_provider()
        if state is not None:
            for mv in state.versions():
                labels = [mv.name, mv.version]
                if mv.backend is not None:
                    info.add_metric(labels + [mv.backend.backend_name, mv.backend.device, mv.backend.dtype], 1)
                ready.add_metric(labels, 1.0 if mv.is_ready else 0.0)
                if mv.load_seconds is not None:
                    load.add_metric(labels, mv.load_seconds)
                if mv.warmup_seconds is not None:
                    warmup.add_metric(labels, mv.warmup_seconds)
                if mv.batcher is not None:
                    depth.add_metric(labels, mv.batcher.depth)
                    capacity.add_metric(labels, mv.batcher.capacity)
            catalog = state.catalog
            if catalog is not None:
                products.add_metric([catalog.name], len(catalog))
            if state.index_build_seconds is not None and catalog is not None:
                build.add_metric([catalog.name], state.index_build_seconds)
        return [info, ready, load, warmup, depth, capacity, products, build]


def render_metrics(registry: CollectorRegistry, accept_header: Optional[str]) -> tuple[bytes, str]:
    """Exposition bytes and content type; OpenMetrics (with exemplars) when the scraper asks for it."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry), content_type
