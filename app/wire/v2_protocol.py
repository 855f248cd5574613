"""The Open Inference Protocol's rules for Swirl's model, whatever carries them (HTTP/JSON,
HTTP with binary tensors, gRPC): the inputs and outputs, how one input tensor is checked and
read, and which outputs a request may ask for. ``app/routes/v2.py`` and ``app/routes/grpc_v2.py``
both use them, so that the two transports accept the same requests and give the same errors.

Errors are ``V2Error`` with an HTTP status; the gRPC side maps it to a status code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from app.wire import encoding
from app.wire.schemas import SampleRequest
from model.data import Normalisation

DEFAULT_MODEL = "swirl"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "pytorch"
INPUTS: dict[str, str] = {
    "n": "INT64",
    "seed": "INT64",
    "sampler": "BYTES",
    "steps": "INT64",
    "eta": "FP32",
    "trajectory_every": "INT64",
    "space": "BYTES",
    "u": "FP32",
    "guidance": "FP32",
}
"""Input name → datatype; each is shape [1] but ``u``, which may also be [n] (one per point).
Only ``n`` is required; the rest default as in /sample (``u`` and ``guidance``: guided models only)."""
VECTOR_INPUTS = frozenset({"u"})
CONDITION_INPUTS = frozenset({"u", "guidance"})
OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "points": ("FP32", [-1, 2]),
    "trajectory": ("FP32", [-1, -1, 2]),
    "trajectory_t": ("INT64", [-1]),
}
"""Output name → (datatype, shape); the trajectory outputs exist when ``trajectory_every`` is given."""


class V2Error(Exception):
    """An Open Inference Protocol error: ``{"error": message}`` with ``status`` (an HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def model_name(model: str) -> str | None:
    """The repository's name for a protocol model name (``swirl``: the default model, None)."""
    return None if model == DEFAULT_MODEL else model


def model_inputs(conditioned: bool) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, shape) of each input of a model: u ([-1]: one, or one per point) and guidance for a guided one only."""
    return [(name, datatype, [-1] if name in VECTOR_INPUTS else [1]) for name, datatype in INPUTS.items() if conditioned or name not in CONDITION_INPUTS]


def is_vector(name: str, shape: list[int] | None) -> bool:
    """An input sent as several elements: u with a shape other than [1]."""
    return name in VECTOR_INPUTS and shape is not None and shape != [1]


def check_input(name: str, datatype: Any, shape: Any) -> str:
    """Check one input tensor's name, datatype and shape (one element; u: [1] or [n]); returns how errors name it."""
    where = f"input '{name}'"
    if name not in INPUTS:
        raise V2Error(400, f"{where}: unknown input; this model takes {', '.join(INPUTS)}")
    if datatype != INPUTS[name]:
        raise V2Error(400, f"{where}: datatype must be {INPUTS[name]}, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise V2Error(400, f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    if is_vector(name, shape):
        if len(shape) != 1 or count < 1:
            raise V2Error(400, f"{where}: shape must be [1] or [n], got {shape}")
    elif count != 1:
        raise V2Error(400, f"{where}: must hold exactly one element (shape [1]), got shape {shape}")
    return where


def binary_element(name: str, raw: bytes, shape: list[int] | None = None) -> Any:
    """An input's one element (u of shape [n]: its n elements, a list) from its raw little-endian
    bytes (BYTES: a 4-byte length, then UTF-8)."""
    count = int(np.prod(shape)) if is_vector(name, shape) and shape else 1
    try:
        values = encoding.v2_decode_binary(raw, INPUTS[name], count)
    except (ValueError, UnicodeDecodeError) as exc:
        raise V2Error(400, f"input '{name}': {exc}") from None
    return values if is_vector(name, shape) else values[0]


def one_element(name: str, values: list[Any], shape: list[int] | None = None) -> Any:
    """An input's one element (u of shape [n]: its n elements, a list) from its listed data (FP32
    as the shortest decimal that round-trips)."""
    count = int(np.prod(shape)) if is_vector(name, shape) and shape else 1
    if len(values) != count:
        raise V2Error(400, f"input '{name}': data holds {len(values)} elements, the shape says {count}")
    datatype = INPUTS[name]
    if datatype in ("FP16", "FP32"):
        values = [encoding.shortest_float(v, datatype) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in values]
    return values if is_vector(name, shape) else values[0]


def add_input(values: dict[str, Any], name: str, value: Any) -> None:
    if name in values:
        raise V2Error(400, f"input '{name}': given twice")
    values[name] = value


def require_n(values: Mapping[str, Any]) -> None:
    if "n" not in values:
        raise V2Error(400, "input 'n': required (INT64, shape [1])")


def check_output(name: Any) -> str:
    """A requested output's name (400 naming it when this model has no such output)."""
    if not isinstance(name, str) or name not in OUTPUTS:
        raise V2Error(400, f"output {name!r}: unknown output; this model produces {', '.join(OUTPUTS)}")
    return name


def check_outputs_fit(params: SampleRequest, requested: Iterable[str] | None) -> None:
    """The trajectory outputs exist only when the request asks for a trajectory."""
    if params.trajectory_every is None and requested is not None and {"trajectory", "trajectory_t"} & set(requested):
        raise V2Error(400, "output 'trajectory': needs the trajectory_every input")


def output_tensors(
    points: np.ndarray, trajectory: list[tuple[int, np.ndarray]], params: SampleRequest, normalisation: Normalisation
) -> dict[str, tuple[str, np.ndarray]]:
    """Every output this request produces: name → (datatype, array) in the request's space."""
    tensors: dict[str, tuple[str, np.ndarray]] = {"points": ("FP32", encoding.to_space(points, params.space, normalisation))}
    if params.trajectory_every is not None:
        frames = [(t, encoding.to_space(frame, params.space, normalisation)) for t, frame in trajectory]
        tensors["trajectory"] = ("FP32", encoding.stack_frames(frames))
        tensors["trajectory_t"] = ("INT64", np.asarray([t for t, _ in frames], dtype=np.int64))
    return tensors


def answer_parameters(seed: int, params: SampleRequest, steps: int, condition: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What was sampled, as the response's parameters (a guided model's: u and guidance too)."""
    return {"seed": seed, "sampler": params.sampler, "steps": steps, "eta": params.eta, "space": params.space, **(condition or {})}
