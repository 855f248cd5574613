"""``AsyncClient``: the asyncio client, call for call the same as ``Client``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


class AsyncClient:
    """A Swirl server at ``url``, for asyncio: ``async with AsyncClient(url) as client: await client.sample(…)``.

    The options are ``Client``'s; its connections are kept and reused until ``aclose()``.
    """

    def __init__(
        self, url: str | None = None, *, timeout: float = 60.0, retries: int | RetryPolicy = 3, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.retry = as_policy(retries)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the calls ------------------------------------------------------------------------

    async def sample(
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
        return sample_from(await self._send("GET", "/sample", params=params, headers={"Accept": NPY}))

    async def forward(self, t: int, n: int = 1000, *, seed: int | None = None, model: str | None = None, space: str | None = None) -> Forward:
        """``n`` draws of q(x_t | x_0) on a fresh swiss roll."""
        return forward_from(await self._send("GET", "/forward", params=query(t=t, n=n, seed=seed, model=model, space=space), headers={"Accept": NPY}))

    async def schedule(self, model: str | None = None) -> dict[str, Any]:
        return await self._json("/schedule", query(model=model))

    async def model(self, model: str | None = None) -> dict[str, Any]:
        return await self._json("/model", query(model=model))

    async def models(self) -> dict[str, Any]:
        return await self._json("/models", {})

    async def ready(self) -> dict[str, Any]:
        return await self._json("/readyz", {}, retry=False)

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
    ) -> AsyncStream:
        """``async for frame in client.stream(…)``: the chain's frames as the server makes them."""
        params = query(n=n, seed=seed, sampler=sampler, steps=steps, eta=eta, model=model, space=space, trajectory_every=every)
        return AsyncStream(self, params)

    # -- plumbing -------------------------------------------------------------------------

    async def _json(self, path: str, params: dict[str, Any], retry: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = (await self._send("GET", path, params=params, retry=retry)).json()
        return body

    async def _send(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise transport_error(exc, self.url) from exc
            wait = self.retry.wait_s(response, attempt) if retry else None
            if wait is None:
                return check(response)
            attempt += 1
            await asyncio.sleep(wait)

    async def _open_stream(self, params: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request("GET", "/sample/stream", params=params, headers={"Accept": EVENT_STREAM})
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, self.url) from exc
            if response.is_success:
                return response
            await response.aread()
            await response.aclose()
            wait = self.retry.wait_s(response, attempt)
            if wait is None:
                raise error_from(response)
            attempt += 1
            await asyncio.sleep(wait)


class AsyncStream:
    """The frames of one streamed chain (iterate once); ``summary``: the ``done`` event's metadata."""

    def __init__(self, client: AsyncClient, params: dict[str, Any]) -> None:
        self._client = client
        self._params = params
        self.summary: dict[str, Any] | None = None

    async def __aiter__(self) -> AsyncIterator[Frame]:
        response = await self._client._open_stream(self._params)
        parser = EventParser()
        try:
            async for line in response.aiter_lines():
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
            await response.aclose()
