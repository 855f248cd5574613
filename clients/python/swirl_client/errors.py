"""Typed errors: each carries the server's error text, the HTTP status and, for bad input, the field.

``SwirlError``
├── ``InvalidInput``      400, 413, 422: a parameter the server refuses (``field`` names it)
│   └── ``NotFound``      404
├── ``Unavailable``       503: queue full, not ready or shutting down (``retry_after_s``); also no connection
│   └── ``RateLimited``   429: this client's rate limit (``retry_after_s``)
├── ``Timeout``           504, or no answer within the client's timeout
└── ``ServerError``       500 and anything else unexpected
"""

from __future__ import annotations


class SwirlError(Exception):
    """An error answer (or none at all) from the server."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # the HTTP status; None when no answer came
        self.field = field  # the parameter at fault, when the server named one
        self.retry_after_s = retry_after_s  # the server's Retry-After, in seconds


class InvalidInput(SwirlError):
    """The server refused a parameter (422, 400, 413); ``field`` names it."""


class NotFound(InvalidInput):
    """No such resource (404)."""


class Unavailable(SwirlError):
    """The server cannot take the request now (503, or no connection); retrying later may work."""


class RateLimited(Unavailable):
    """This client used up its rate limit (429); ``retry_after_s`` says when to come back."""


class Timeout(SwirlError):
    """The request took too long: the server's timeout (504) or the client's."""


class ServerError(SwirlError):
    """The server failed (500) or answered something this client does not understand."""
