"""Accept and Accept-Encoding parsing (RFC 9110 §12.5): weights, specificity, q = 0, malformed ranges."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException

from app.wire.encoding import JSON, NPY, POINT_FORMATS
from app.wire.negotiation import accepts_encoding, choose, negotiate, parse_accept


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("application/x-npy", NPY),
        ("APPLICATION/X-NPY", NPY),
        ("application/x-npy, */*", NPY),  # the exact range beats the wildcard at equal weight
        ("application/x-npy;q=0.5, application/json", JSON),
        ("application/json;q=0.2, application/x-npy;q=0.9", NPY),
        ("application/json; q=0.2 , application/x-npy ; q=0.9", NPY),
        ("application/json;q=0, */*", NPY),  # json refused outright, npy accepted through */*
        ("application/*;q=0.1, application/x-npy;q=0.05", JSON),
        ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", JSON),  # a browser
        ("application/x-npy;q=1.0", NPY),
        ("application/x-npy;q=bogus, application/json;q=0.1", JSON),  # a malformed weight voids its range
        ("application/json;charset=utf-8", JSON),
    ],
)
def test_choose(accept: str | None, expected: str) -> None:
    assert choose(accept, POINT_FORMATS) == expected


@pytest.mark.parametrize(
    "accept",
    ["text/csv", "text/*", "application/json;q=0, application/x-npy;q=0", "image/png, text/plain;q=0.5", "*/*;q=0", "garbage", "application/x-npy;q=2"],
)
def test_nothing_acceptable(accept: str) -> None:
    assert choose(accept, POINT_FORMATS) is None
    with pytest.raises(HTTPException) as caught:
        negotiate(accept, POINT_FORMATS)
    assert caught.value.status_code == 406
    assert JSON in str(caught.value.detail) and NPY in str(caught.value.detail)


def test_parse_accept_keeps_weights_and_skips_malformed_ranges() -> None:
    ranges = parse_accept("application/x-npy;q=0.7, nonsense, */x, text/*;q=0")
    assert [(r.type, r.subtype, r.q) for r in ranges] == [("application", "x-npy", 0.7), ("text", "*", 0.0)]
    assert [r.specificity for r in ranges] == [2, 1]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("*", True),
        ("*;q=0.5", True),
        ("br, *;q=0", False),
        ("gzip;q=0, *", False),
        ("GZIP;q=0.3", True),
    ],
)
def test_accepts_encoding(header: str | None, expected: bool) -> None:
    assert accepts_encoding(header, "gzip") is expected
