"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POINT_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("swirl_requests", "HTTP requests by endpoint, method and status", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("swirl_request_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_points = Histogram("swirl_batch_points", "points per batched reverse chain", buckets=POINT_BUCKETS, registry=r)
        self.batch_requests = Histogram("swirl_batch_requests", "requests coalesced into one chain", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.chain_seconds = Histogram("swirl_chain_seconds", "compute time of one batched chain", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("swirl_queue_depth", "sample requests waiting for the worker", registry=r)
        self.points = Counter("swirl_points_generated", "points returned, by endpoint", ["endpoint"], registry=r)
        self.rejected = Counter("swirl_rejected", "requests refused or abandoned, by reason", ["reason"], registry=r)
        self.ready = Gauge("swirl_ready", "1 once the model is loaded and warmed", registry=r)
