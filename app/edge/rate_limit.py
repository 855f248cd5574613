"""Per-client rate limits: token buckets keyed by client address, answered with 429 and Retry-After.

Two independent limits, both off by default:

* **compute** (``SWIRL_RATE_LIMIT`` per second, ``SWIRL_RATE_LIMIT_BURST`` at once): the cost of
  a request is the work it asks of the network, points × network evaluations (``/sample``:
  n × the steps its sampler runs; ``/forward``: n). A route charges it with one call once its
  parameters are validated and before any work is queued::

      charge(request, points=n, evaluations=steps)

* **requests** (``SWIRL_RATE_LIMIT_REQUESTS`` per second, ``SWIRL_RATE_LIMIT_REQUESTS_BURST``
  at once): every request costs 1, checked by ``RequestRateLimit`` before routing. Liveness,
  readiness and metrics are exempt (load balancers and Prometheus poll them from one address).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second. A request is let in
when the bucket holds its cost (a request costing more than the whole burst needs a full
bucket), and its full cost is taken out, so the bucket may go negative: a client's long-run
rate never exceeds ``rate`` whatever the size of its requests. A refused request takes
nothing, and the answer's ``Retry-After`` says when it would be let in. Clients that have
been idle long enough to refill are forgotten, and at most ``MAX_CLIENTS`` buckets are kept
(the longest-idle go first), so memory stays bounded under address-spraying floods.

With ``SWIRL_WORKERS`` = k server processes, each keeps its own buckets holding 1/k of every
rate and burst (``app.main.rate_limiter``): connections land on processes at random, so a
client never gets more than the settings in total, and one that keeps a single connection
open reaches one process and gets 1/k of them. Exact shared limits across processes or
replicas belong to the reverse proxy.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge.client_address import rate_key
from app.edge.request_context import client_of
from app.metrics import Metrics
from app.wire.encoding import FastJSON, dumps

MAX_CLIENTS = 100_000
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RateLimited(Exception):
    """429: the client has used its budget; ``retry_after_s`` says when this request would fit."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per client key; ``take`` is O(1) and never blocks."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float) -> float:
        """Take ``cost`` from ``key``'s bucket: 0.0 if let in, else the seconds until it would be."""
        now = self.clock()
        self._forget_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        needed = min(cost, self.burst)
        if bucket.tokens < needed:
            return (needed - bucket.tokens) / self.rate
        bucket.tokens -= cost
        return 0.0

    def _forget_idle(self, now: float) -> None:
        # buckets are ordered by last use, so the idle ones are at the front
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if oldest.tokens + (now - oldest.updated) * self.rate < self.burst:
                return
            del self._buckets[key]


class RateLimiter:
    """The app's limits (either may be None: off) and the metrics they count refusals in."""

    def __init__(self, compute: TokenBuckets | None, requests: TokenBuckets | None, metrics: Metrics) -> None:
        self.compute = compute
        self.requests = requests
        self.metrics = metrics

    def charge(self, client: str, points: int, evaluations: int) -> None:
        """Raise RateLimited unless ``client`` may spend points × evaluations now."""
        if self.compute is None:
            return
        cost = float(points) * float(evaluations)
        wait = self.compute.take(rate_key(client), cost)
        if wait:
            self.metrics.rejected.labels(reason="rate_limit_compute").inc()
            raise RateLimited(
                f"rate limit: this request costs {cost:g} (points × network evaluations); this client may spend "
                f"{self.compute.rate:g} per second, {self.compute.burst:g} at once (SWIRL_RATE_LIMIT, SWIRL_RATE_LIMIT_BURST)",
                wait,
            )


def limiter_of(request: Request) -> RateLimiter | None:
    return getattr(request.app.state, "rate_limiter", None)


def charge(request: Request, points: int, evaluations: int = 1) -> None:
    """The one line a route adds: charge points × network evaluations to the request's client (429 if over)."""
    limiter = limiter_of(request)
    if limiter is not None:
        limiter.charge(client_of(request.scope), points, evaluations)


class RequestRateLimit:
    """ASGI middleware for the per-request limit (a 429 before routing, so a flood costs next to nothing)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self.buckets = limiter.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(rate_key(client_of(scope)), 1.0)
        if not wait:
            await self.app(scope, receive, send)
            return
        self.limiter.metrics.rejected.labels(reason="rate_limit_requests").inc()
        exc = RateLimited(
            f"rate limit: this client may make {self.buckets.rate:g} requests per second, {self.buckets.burst:g} at once "
            "(SWIRL_RATE_LIMIT_REQUESTS, SWIRL_RATE_LIMIT_REQUESTS_BURST)",
            wait,
        )
        body = dumps({"error": str(exc)})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", exc.retry_after.encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, limiter: RateLimiter) -> None:
    """Keep ``limiter`` on the app (for ``charge``), answer RateLimited with 429 and add the request limit."""
    app.state.rate_limiter = limiter

    @app.exception_handler(RateLimited)
    async def on_rate_limited(request: Request, exc: RateLimited) -> Response:
        return FastJSON({"error": str(exc)}, status_code=429, headers={"Retry-After": exc.retry_after})

    if limiter.requests is not None:
        app.add_middleware(RequestRateLimit, limiter=limiter)
