"""Content negotiation: which of the formats an endpoint produces does the client's ``Accept`` prefer?

RFC 9110 §12.5.1: each media range may carry a weight ``q`` (0…1, 1 when absent); an offered
type takes the weight of the most specific range that matches it (``type/subtype`` over
``type/*`` over ``*/*``), and q = 0 means "not acceptable". Among equal weights the type
named more specifically wins, then the endpoint's own order (its first offer is the default).
No ``Accept`` header (or an empty one) accepts anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException


@dataclass(frozen=True)
class MediaRange:
    type: str  # "application", or "*"
    subtype: str  # "x-npy", or "*"
    q: float

    @property
    def specificity(self) -> int:
        """2 for type/subtype, 1 for type/*, 0 for */*."""
        return (self.type != "*") + (self.subtype != "*")

    def matches(self, media_type: str) -> bool:
        kind, _, sub = media_type.partition("/")
        return self.type in ("*", kind) and self.subtype in ("*", sub)


def _weight(params: list[str]) -> float | None:
    """The q parameter (1 when absent); None when it is malformed, which voids the range."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


def parse_accept(header: str) -> list[MediaRange]:
    """``"application/x-npy, application/json;q=0.5"`` → media ranges (malformed ones are skipped)."""
    ranges = []
    for part in header.split(","):
        media, *params = part.split(";")
        kind, slash, sub = media.strip().lower().partition("/")
        q = _weight(params)
        if not slash or not kind or not sub or q is None or (kind == "*" and sub != "*"):
            continue
        ranges.append(MediaRange(kind, sub, q))
    return ranges


def choose(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered media type the client prefers, or None when it accepts none of them."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges = parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for index, media_type in enumerate(offered):
        matching = [r for r in ranges if r.matches(media_type)]
        if not matching:
            continue
        most_specific = max(matching, key=lambda r: r.specificity)
        if most_specific.q <= 0.0:
            continue
        rank = (most_specific.q, most_specific.specificity, -index)
        if best is None or rank > best:
            best, chosen = rank, media_type
    return chosen


def negotiate(accept: str | None, offered: Sequence[str]) -> str:
    """``choose``, or a 406 whose error names every type this endpoint can produce."""
    chosen = choose(accept, offered)
    if chosen is None:
        raise HTTPException(406, f"accept: cannot produce any of {accept!r}; this endpoint produces {', '.join(offered)}")
    return chosen


def accepts_encoding(accept_encoding: str | None, coding: str) -> bool:
    """Does ``Accept-Encoding`` allow ``coding`` (e.g. gzip) with a weight above 0?"""
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, *params = part.split(";")
        q = _weight(params)
        if name.strip() and q is not None:
            weights[name.strip().lower()] = q
    if coding in weights:
        return weights[coding] > 0.0
    return weights.get("*", 0.0) > 0.0
