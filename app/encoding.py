"""Fast JSON for large point clouds: orjson straight from numpy, no per-float validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def dumps(payload: Any) -> bytes:
    """Encode ``payload``; (n, 2) float32 arrays become [[x, y], ...] lists."""
    return orjson.dumps(payload, option=OPTIONS)


def points(array: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 (n, 2) array, the layout orjson serialises natively."""
    return np.ascontiguousarray(array, dtype=np.float32)


class JSONBytes(Response):
    """A response whose body was already encoded (possibly off the event loop)."""

    media_type = "application/json"


class FastJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
