"""Swirl's Python client: ``Client`` and ``AsyncClient`` (points as NumPy arrays, streamed chains,
typed errors, retries after Retry-After) and the ``swirl-client`` command line (``swirl_client.cli``)."""

from swirl_client.async_client import AsyncClient, AsyncStream
from swirl_client.client import Client, Stream
from swirl_client.errors import InvalidInput, NotFound, RateLimited, ServerError, SwirlError, Timeout, Unavailable
from swirl_client.protocol import DEFAULT_URL, Forward, Frame, RetryPolicy, Sample

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncStream",
    "Client",
    "Forward",
    "Frame",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "Sample",
    "ServerError",
    "Stream",
    "SwirlError",
    "Timeout",
    "Unavailable",
]
