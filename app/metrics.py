"""Prometheus metrics, one registry per app (so tests can build many apps).

With several server processes (``SWIRL_WORKERS`` > 1) every process writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` (set by ``python -m app`` before the processes start) and
``/metrics`` answers with the sum over all live processes, whichever process serves it.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POINT_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000)
ROW_BUCKETS = (1, 10, 100, 1_000, 2_000, 4_000, 8_000, 16_000, 65_536, 262_144, 1_048_576)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("swirl_requests", "HTTP requests by endpoint, method and status", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("swirl_request_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.engine_latency = Histogram(
            "swirl_sample_seconds", "admission to answer of a sampling request, by sampler", ["sampler"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_points = Histogram("swirl_request_points", "points per sampling request", buckets=POINT_BUCKETS, registry=r)
        self.ticks = Counter("swirl_engine_ticks", "engine ticks (one network evaluation over every scheduled row)", registry=r)
        self.tick_rows = Histogram("swirl_engine_tick_rows", "rows advanced per engine tick", buckets=ROW_BUCKETS, registry=r)
        self.in_flight = Gauge("swirl_requests_in_flight", "sampling requests admitted and not finished", registry=r, multiprocess_mode="livesum")
        self.queue_work = Gauge("swirl_queue_work", "points × network evaluations admitted and not finished", registry=r, multiprocess_mode="livesum")
        self.cancelled = Counter("swirl_cancelled_mid_chain", "requests that left the engine mid-chain (client gone or timed out)", registry=r)
        self.points = Counter("swirl_points_generated", "points returned, by endpoint", ["endpoint"], registry=r)
        self.rejected = Counter("swirl_rejected", "requests refused or abandoned, by reason", ["reason"], registry=r)
        self.cache_hits = Counter("swirl_response_cache_hits", "seeded answers served from the response cache", registry=r)
        self.cache_misses = Counter("swirl_response_cache_misses", "seeded answers looked up in the response cache and not found", registry=r)
        self.cache_bytes = Gauge("swirl_response_cache_bytes", "bytes held by the response cache", registry=r, multiprocess_mode="livesum")
        self.ready = Gauge("swirl_ready", "server processes loaded and warmed", registry=r, multiprocess_mode="livesum")
        # per model (labels are names from the repository, never raw request input)
        self.model_requests = Counter("swirl_model_requests", "requests that named a model (or got the default)", ["model", "endpoint", "status"], registry=r)
        self.model_errors = Counter("swirl_model_errors", "requests on a model answered with status >= 400", ["model", "endpoint", "status"], registry=r)
        self.model_latency = Histogram(
            "swirl_model_request_seconds", "request latency by model and endpoint", ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_points = Counter("swirl_model_points_generated", "points returned, by model and endpoint", ["model", "endpoint"], registry=r)
        self.model_versions = Gauge(
            "swirl_model_versions_loaded",
            "versions of a model held by the engine (2 while an old one finishes its requests; the most any process holds)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_available = Gauge("swirl_model_available", "1 while the model serves (in every process)", ["model"], registry=r, multiprocess_mode="livemin")
        self.model_reloads = Counter("swirl_model_reloads", "reload outcomes by model: loaded, failed, removed", ["model", "result"], registry=r)

    def exposition(self) -> bytes:
        """The text exposition: this registry, or every live process's when running several."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
