"""What the sync and async clients share: the answers' types, reading them from HTTP responses,
the error mapping, the retry rule and the server-sent-event parser. No I/O here."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from swirl_client.errors import InvalidInput, NotFound, RateLimited, ServerError, SwirlError, Timeout, Unavailable

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "SWIRL_URL"
NPY = "application/x-npy"
EVENT_STREAM = "text/event-stream"


def default_url() -> str:
    """SWIRL_URL, or the server's default address."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


# -- answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A /sample answer: the points and what produced them."""

    points: np.ndarray  # (n, 2) float32
    seed: int  # the seed used (the server's pick when none was given): the same call with it gives the same points
    sampler: str
    steps: int  # network evaluations
    eta: float
    space: str  # "model" (normalised) or "data"
    model: str  # the checkpoint id (sha256 of the weights) that answered
    model_name: str
    timings: dict[str, float] = field(default_factory=dict)  # queue_ms, compute_ms, encode_ms (Server-Timing)
    trajectory: np.ndarray | None = None  # (frames, n, 2), x_T … x_0, when trajectory_every was given
    trajectory_t: list[int] | None = None  # each frame's t


@dataclass(frozen=True)
class Forward:
    """A /forward answer: n draws of q(x_t | x_0) on a fresh swiss roll."""

    points: np.ndarray  # (n, 2) float32
    t: int
    seed: int
    alpha_bar: float
    space: str
    model: str
    model_name: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    """One frame of a streamed chain: x_t for the frame's t (index 0 is x_T, the last is x_0)."""

    index: int
    t: int
    points: np.ndarray  # (n, 2) float32


# -- reading answers ----------------------------------------------------------------------

_TIMING = re.compile(r"(\w+);dur=([0-9.]+)")


def server_timing(header: str | None) -> dict[str, float]:
    """``queue;dur=0.4;desc="…", compute;dur=35.1`` → {"queue_ms": 0.4, "compute_ms": 35.1}."""
    return {f"{name}_ms": float(value) for name, value in _TIMING.findall(header or "")}


def load_npy(content: bytes) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(content), allow_pickle=False)
    return array


def sample_from(response: httpx.Response) -> Sample:
    headers = response.headers
    array = load_npy(response.content)
    trajectory_t = [int(t) for t in headers["swirl-trajectory-t"].split(",")] if "swirl-trajectory-t" in headers else None
    return Sample(
        points=array[-1] if trajectory_t is not None else array,
        seed=int(headers["swirl-seed"]),
        sampler=headers["swirl-sampler"],
        steps=int(headers["swirl-steps"]),
        eta=float(headers["swirl-eta"]),
        space=headers["swirl-space"],
        model=headers["swirl-model"],
        model_name=headers.get("swirl-model-name", ""),
        timings=server_timing(headers.get("server-timing")),
        trajectory=array if trajectory_t is not None else None,
        trajectory_t=trajectory_t,
    )


def forward_from(response: httpx.Response) -> Forward:
    headers = response.headers
    return Forward(
        points=load_npy(response.content),
        t=int(headers["swirl-t"]),
        seed=int(headers["swirl-seed"]),
        alpha_bar=float(headers["swirl-alpha-bar"]),
        space=headers["swirl-space"],
        model=headers["swirl-model"],
        model_name=headers.get("swirl-model-name", ""),
        timings=server_timing(headers.get("server-timing")),
    )


def query(**values: Any) -> dict[str, Any]:
    """Query parameters: the given ones (None: the server's default)."""
    return {key: value for key, value in values.items() if value is not None}


# -- errors -------------------------------------------------------------------------------


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds only, as Swirl sends it)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from(response: httpx.Response) -> SwirlError:
    """The typed error for a non-2xx answer, with the server's text and the field it names."""
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    message = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else (response.text or response.reason_phrase)
    field = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and detail[0].get("loc"):
        field = str(detail[0]["loc"][-1])
    kind: type[SwirlError]
    if status == 404:
        kind = NotFound
    elif status in (400, 413, 422):
        kind = InvalidInput
    elif status == 429:
        kind = RateLimited
    elif status == 503:
        kind = Unavailable
    elif status == 504:
        kind = Timeout
    else:
        kind = ServerError
    return kind(f"{status}: {message}", status=status, field=field, retry_after_s=retry_after(response))


def check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise error_from(response)


def transport_error(exc: httpx.TransportError, url: str) -> SwirlError:
    """httpx's own failures: no answer in time (Timeout) or no connection (Unavailable)."""
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer from {url} in time: {exc!r}")
    return Unavailable(f"cannot reach {url}: {exc}")


# -- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 503 and 429 after the server's Retry-After: at most ``retries`` more tries, none
    waiting longer than ``max_wait_s`` (a longer Retry-After ends the retries); ``retries=0``: off."""

    retries: int = 3
    max_wait_s: float = 30.0
    default_wait_s: float = 1.0  # when the answer has no Retry-After

    def wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before another try of a request whose ``attempt``-th answer (0-based) is
        ``response``; None: do not retry."""
        if response.status_code not in (429, 503) or attempt >= self.retries:
            return None
        wait = retry_after(response)
        wait = self.default_wait_s if wait is None else wait
        return wait if wait <= self.max_wait_s else None


def as_policy(retries: int | RetryPolicy) -> RetryPolicy:
    return retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)


# -- server-sent events -------------------------------------------------------------------


class EventParser:
    """``text/event-stream`` lines → (event, data) pairs, one per blank-line-terminated event."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            if not self.data:
                return None
            event, data = self.event, "\n".join(self.data)
            self.event, self.data = "message", []
            return event, data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def stream_item(event: str, data: str) -> Frame | dict[str, Any]:
    """A ``frame`` event as a Frame; ``done`` as its summary dict; ``error`` raises its error."""
    payload: Any = json.loads(data)
    if event == "frame":
        return Frame(int(payload["index"]), int(payload["t"]), np.asarray(payload["points"], dtype=np.float32).reshape(-1, 2))
    if event == "done":
        summary: dict[str, Any] = payload
        return summary
    if event == "error":
        status = int(payload.get("status", 500))
        kind = Timeout if status == 504 else ServerError
        raise kind(f"{status}: {payload.get('error', 'stream failed')}", status=status)
    raise ServerError(f"unexpected event {event!r} in the stream")


def headers_for(accept: str) -> Mapping[str, str]:
    return {"Accept": accept}
