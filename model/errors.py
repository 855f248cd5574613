"""The one error the model raises for a bad request parameter; the service maps it to 422."""

from __future__ import annotations


class InvalidParameter(ValueError):
    """A request parameter the model cannot honour; ``field`` names it (``steps``, ``eta``, ``sampler``, …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
