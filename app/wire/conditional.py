"""Conditional requests (RFC 9110 §13.1.2): does an ``If-None-Match`` header match an entity tag?

``If-None-Match`` is ``*`` or a comma-separated list of entity tags, each ``"opaque"`` or
``W/"opaque"``, compared weakly (the ``W/`` prefix is ignored). A header that does not parse is
ignored, as if absent (§13.1: a server MUST ignore a conditional it does not understand), so it
never turns a request into an error.
"""

from __future__ import annotations

import re

_ENTITY_TAG = re.compile(r'\s*(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def entity_tags(header: str) -> list[str] | None:
    """The header's entity tags without their ``W/`` (["*"] for a wildcard), or None when malformed."""
    text = header.strip()
    if text == "*":
        return ["*"]
    tags, position = [], 0
    while position < len(text):
        match = _ENTITY_TAG.match(text, position)
        if match is None or match.end() == position:
            return None
        tags.append(match.group(1))
        position = match.end()
    return tags or None


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match: header`` matches ``etag`` (so a GET answers 304 Not Modified)."""
    if header is None:
        return False
    tags = entity_tags(header)
    return tags is not None and ("*" in tags or etag in tags)
