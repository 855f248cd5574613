"""``Client``: the synchronous client (one pooled httpx connection set, reused across calls)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from swirl_client.protocol import (
    EVENT_STREAM,
    NPY,
    EventParser,
    Forward,
    Frame,
    RetryPolicy,
    Sample,
    as_policy,
    check,
    default_url,
    error_from,
    forward_from,
    query,
    sample_from,
    stream_item,
    transport_error,
)


class Client:
    """A Swirl server at ``url`` (default: SWIRL_URL, else http://127.0.0.1:8000).

    ``timeout``: seconds for each request (httpx's connect/read/write/pool timeouts).
    ``retries``: how many more tries after a 503 or 429, each after the server's Retry-After
    (a ``RetryPolicy`` sets the longest wait too); 0 turns retries off.
    Use it as a context manager, or call ``close()``: its connections are kept and reused.
    """

    def __init__(self, url: str | None = None, *, timeout: float = 60.0, retries: int | RetryPolicy = 3, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.retry = as_policy(retries)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the calls ------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        model: str | None = None,
        space: str | None = None,
        trajectory_every: int | None = None,
    ) -> Sample:
        """``n`` points from the reverse chain, as a (n, 2) float32 array with the answer's metadata."""
        params = query(n=n, seed=seed, sampler=sampler, steps=steps, eta=eta, model=model, space=space, trajectory_every=trajectory_every)
        return sample_from(self._send("GET", "/sample", params=params, headers={"Accept": NPY}))

    def forward(self, t: int, n: int = 1000, *, seed: int | None = None, model: str | None = None, space: str | None = None) -> Forward:
        """``n`` draws of q(x_t | x_0) on a fresh swiss roll."""
        return forward_from(self._send("GET", "/forward", params=query(t=t, n=n, seed=seed, model=model, space=space), headers={"Accept": NPY}))

    def schedule(self, model: str | None = None) -> dict[str, Any]:
        """The noise schedule (β_t, ᾱ_t, …) as the server reports it."""
        return self._json("/schedule", query(model=model))

    def model(self, model: str | None = None) -> dict[str, Any]:
        """A model's description (the default model's without a name)."""
        return self._json("/model", query(model=model))

    def models(self) -> dict[str, Any]:
        """Every model this server serves."""
        return self._json("/models", {})

    def ready(self) -> dict[str, Any]:
        """/readyz's answer (raises Unavailable while the server is not ready)."""
        return self._json("/readyz", {}, retry=False)

    def stream(
        self,
        n: int,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        model: str | None = None,
        space: str | None = None,
        every: int | None = None,
    ) -> Stream:
        """The chain frame by frame as the server makes it: iterate the returned ``Stream`` for
        ``Frame``\\s (x_T first, x_0 last); its ``summary`` holds the final metadata afterwards."""
        params = query(n=n, seed=seed, sampler=sampler, steps=steps, eta=eta, model=model, space=space, trajectory_every=every)
        return Stream(self, params)

    # -- plumbing -------------------------------------------------------------------------

    def _json(self, path: str, params: dict[str, Any], retry: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = self._send("GET", path, params=params, retry=retry).json()
        return body

    def _send(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise transport_error(exc, self.url) from exc
            wait = self.retry.wait_s(response, attempt) if retry else None
            if wait is None:
                return check(response)
            attempt += 1
            time.sleep(wait)

    def _open_stream(self, params: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request("GET", "/sample/stream", params=params, headers={"Accept": EVENT_STREAM})
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, self.url) from exc
            if response.is_success:
                return response
            response.read()
            response.close()
            wait = self.retry.wait_s(response, attempt)
            if wait is None:
                raise error_from(response)
            attempt += 1
            time.sleep(wait)


class Stream:
    """The frames of one streamed chain (iterate once); ``summary``: the ``done`` event's metadata."""

    def __init__(self, client: Client, params: dict[str, Any]) -> None:
        self._client = client
        self._params = params
        self.summary: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Frame]:
        response = self._client._open_stream(self._params)
        parser = EventParser()
        try:
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is None:
                    continue
                item = stream_item(*event)
                if isinstance(item, Frame):
                    yield item
                else:
                    self.summary = item
        except httpx.TransportError as exc:
            raise transport_error(exc, self._client.url) from exc
        finally:
            response.close()
