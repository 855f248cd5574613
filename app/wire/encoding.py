"""Every wire format Swirl speaks, from numpy, in one place.

- JSON: orjson straight from numpy (no per-float Python objects), optionally gzip-compressed.
- NPY: NumPy's ``.npy`` (format 1.0, little-endian float32), read back with ``np.load``.
- The Open Inference Protocol's binary tensor data extension: a JSON header followed by raw
  little-endian tensor bytes, the header's length in ``Inference-Header-Content-Length``.
- Server-sent events: ``event:``/``data:`` lines, one JSON object per event.
- The answer's metadata as ``Swirl-*`` response headers and the ``Server-Timing`` header.
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from model.data import Normalisation

JSON = "application/json"
NPY = "application/x-npy"
EVENT_STREAM = "text/event-stream"
OCTET_STREAM = "application/octet-stream"
POINT_FORMATS = (JSON, NPY)  # what /sample and /forward produce; the first is the default

OPTIONS = orjson.OPT_SERIALIZE_NUMPY
GZIP_LEVEL = 1  # measured in benchmarks/formats.py: level 1 gets most of the size win at a fraction of level 6's time


def dumps(payload: Any) -> bytes:
    """Encode ``payload``; (n, 2) float32 arrays become [[x, y], ...] lists."""
    return orjson.dumps(payload, option=OPTIONS)


def points(array: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 (n, 2) array, the layout orjson serialises natively."""
    return np.ascontiguousarray(array, dtype=np.float32)


def to_space(array: np.ndarray, space: str, normalisation: Normalisation) -> np.ndarray:
    """Points in ``space``: ``model`` (the normalised space the diffusion runs in) or ``data``
    (the swiss roll's own (x, z): point × scale + mean, computed in float64), as float32."""
    if space == "model":
        return points(array)
    return points(normalisation.denormalise(np.asarray(array, dtype=np.float64)))


def npy(array: np.ndarray, dtype: str = "<f4") -> bytes:
    """``array`` as a version-1.0 ``.npy`` file of little-endian float32 (or ``dtype``; ``np.load`` reads it)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array, dtype=dtype), version=(1, 0), allow_pickle=False)
    return buffer.getvalue()


def read_npy_vector(body: bytes, field: str, max_length: int) -> np.ndarray:
    """A request body that is a 1-D ``.npy`` of numbers (float or int, any byte order) → float64 (k,).

    Never unpickles (``allow_pickle=False``); ValueError naming ``field`` on anything else,
    or when the header declares more than ``max_length`` values (checked before reading them).
    """
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = read_header(stream)  # the header alone: no data read yet
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{field}: the body is not a valid .npy file ({exc})") from None
    if len(shape) != 1:
        raise ValueError(f"{field}: the .npy must be 1-D (one value per point), got shape {shape}")
    if shape[0] > max_length:
        raise ValueError(f"{field}: the .npy holds {shape[0]} values, more than {max_length}")
    if dtype.kind not in "fiu":
        raise ValueError(f"{field}: the .npy must hold numbers, got dtype {dtype}")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{field}: the body is not a valid .npy file ({exc})") from None
    return np.asarray(array, dtype=np.float64)


def stack_frames(frames: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
    """Trajectory frames [(t, (n, 2))] → one (frames, n, 2) float32 array."""
    return np.stack([frame for _, frame in frames]).astype(np.float32, copy=False)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


# -- metadata headers ----------------------------------------------------------------------

METADATA_HEADERS = {
    "n": "Swirl-N",
    "seed": "Swirl-Seed",
    "sampler": "Swirl-Sampler",
    "steps": "Swirl-Steps",
    "eta": "Swirl-Eta",
    "model": "Swirl-Model",
    "model_name": "Swirl-Model-Name",
    "space": "Swirl-Space",
    "t": "Swirl-T",
    "alpha_bar": "Swirl-Alpha-Bar",
    "trajectory_t": "Swirl-Trajectory-T",
    "evaluations": "Swirl-Evaluations",
    "grid": "Swirl-Grid",
    "u": "Swirl-U",
    "guidance": "Swirl-Guidance",
}
"""Metadata key → response header. Lists (the frames' t values) are comma-separated."""


def metadata_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in metadata.items():
        name = METADATA_HEADERS[key]
        if isinstance(value, list | tuple):
            headers[name] = ",".join(str(v) for v in value)
        elif isinstance(value, float):
            headers[name] = repr(value)
        else:
            headers[name] = str(value)
    return headers


def server_timing(queue_s: float | None = None, compute_s: float | None = None, encode_s: float | None = None) -> str:
    """A ``Server-Timing`` value (W3C Server Timing) in milliseconds: queue wait, compute, encode."""
    parts = []
    for name, seconds, description in (("queue", queue_s, "queue wait"), ("compute", compute_s, "sampling"), ("encode", encode_s, "encoding")):
        if seconds is not None:
            parts.append(f'{name};dur={seconds * 1000:.3f};desc="{description}"')
    return ", ".join(parts)


# -- whole answers -------------------------------------------------------------------------


def json_answer(metadata: Mapping[str, Any], xs: np.ndarray, frames: Sequence[tuple[int, np.ndarray]] | None) -> bytes:
    """``{metadata…, "points": [[x, y], …], "trajectory": [{"t", "points"}, …]}`` (trajectory only when asked)."""
    payload: dict[str, Any] = {key: value for key, value in metadata.items() if key != "trajectory_t"}
    payload["points"] = points(xs)
    if frames is not None:
        payload["trajectory"] = [{"t": t, "points": points(frame)} for t, frame in frames]
    return dumps(payload)


def npy_answer(xs: np.ndarray, frames: Sequence[tuple[int, np.ndarray]] | None) -> bytes:
    """(n, 2) points, or with a trajectory its (frames, n, 2) stack, x_T … x_0 (the last frame is the points)."""
    return npy(stack_frames(frames) if frames is not None else xs)


def encode_answer(media_type: str, metadata: Mapping[str, Any], xs: np.ndarray, frames: Sequence[tuple[int, np.ndarray]] | None) -> bytes:
    """The body in ``media_type`` (JSON or NPY)."""
    if media_type == NPY:
        return npy_answer(xs, frames)
    return json_answer(metadata, xs, frames)


# -- server-sent events --------------------------------------------------------------------


def sse_event(event: str, payload: Any) -> bytes:
    """One server-sent event: ``event: <name>`` and one ``data:`` line of JSON (orjson never emits newlines)."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


# -- the Open Inference Protocol's binary tensor data extension ----------------------------

INFERENCE_HEADER = "Inference-Header-Content-Length"
V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


def v2_body(header: Mapping[str, Any], tensors: Sequence[bytes]) -> tuple[bytes, int]:
    """The JSON header, then each binary tensor's bytes in output order; returns (body, header length)."""
    head = dumps(header)
    return head + b"".join(tensors), len(head)


def v2_tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A numeric tensor's raw little-endian bytes, row-major."""
    return np.ascontiguousarray(array, dtype=V2_DTYPES[datatype]).tobytes()


def shortest_float(value: Any, datatype: str) -> float:
    """An FP32 (or FP16) element as the shortest decimal that round-trips: 0.3 sent as float32 is
    0.30000001192…; read back as 0.3 it gives the same answer as ``eta=0.3`` on /sample."""
    return float(str(np.float32(value) if datatype == "FP32" else np.float16(value)))


def v2_decode_binary(raw: bytes, datatype: str, count: int) -> list[Any]:
    """Binary tensor bytes → a flat list of ``count`` elements (BYTES: 4-byte little-endian length + bytes each).

    Raises ValueError when the bytes do not hold exactly ``count`` elements."""
    if datatype == "BYTES":
        items: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ValueError("truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ValueError("truncated BYTES element")
            items.append(raw[offset : offset + length].decode("utf-8"))
            offset += length
    else:
        dtype = V2_DTYPES.get(datatype)
        if dtype is None:
            raise ValueError(f"unsupported datatype {datatype}")
        if len(raw) % dtype.itemsize:
            raise ValueError(f"{len(raw)} bytes is not a whole number of {datatype} elements")
        array = np.frombuffer(raw, dtype=dtype)
        items = [shortest_float(v, datatype) for v in array] if datatype in ("FP16", "FP32") else array.tolist()
    if len(items) != count:
        raise ValueError(f"binary data holds {len(items)} elements, the shape says {count}")
    return items


class JSONBytes(Response):
    """A response whose body was already encoded (possibly off the event loop)."""

    media_type = JSON


class FastJSON(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return dumps(content)
