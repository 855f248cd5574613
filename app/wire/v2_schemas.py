"""Shapes of the Open Inference Protocol (v2) answers, for OpenAPI only.

The routes in ``app/routes/v2.py`` build their answers with orjson (tensor data straight from
numpy); these models say what those answers look like, with examples, so that ``/docs`` and
generated clients see typed responses for every v2 endpoint.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_VERSION = "66744bafcf2190c9fa6751e1fa0b1c3039d7329fbfe7419ec68e283e5dfe839e"


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]}, extra="forbid")


class ServerMetadata(BaseModel):
    model_config = _example({"name": "swirl", "version": "0.3.0", "extensions": ["binary_tensor_data"]})
    name: str = Field(description="the server's name")
    version: str = Field(description="the server's version")
    extensions: list[str] = Field(description="protocol extensions supported")


class Live(BaseModel):
    model_config = _example({"live": True})
    live: bool


class Ready(BaseModel):
    model_config = _example({"ready": True})
    ready: bool = Field(description="every server process loaded and warmed up (503 while not)")


class TensorMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    datatype: str = Field(description="INT64, FP32, BYTES, …")
    shape: list[int] = Field(description="-1: depends on the request")


class ModelMetadata(BaseModel):
    model_config = _example(
        {
            "name": "swirl",
            "versions": [EXAMPLE_VERSION],
            "platform": "pytorch",
            "inputs": [{"name": "n", "datatype": "INT64", "shape": [1]}, {"name": "sampler", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "points", "datatype": "FP32", "shape": [-1, 2]}],
        }
    )
    name: str
    versions: list[str] = Field(description="the loaded version: the checkpoint id (sha256)")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    model_config = _example({"name": "swirl", "ready": True})
    name: str
    ready: bool


class OutputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="points, trajectory or trajectory_t")
    datatype: str
    shape: list[int]
    data: list[float] | None = Field(None, description="row-major elements (absent when sent as binary tensor data)")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the tensor's bytes after the JSON header")


class InferResponse(BaseModel):
    model_config = _example(
        {
            "model_name": "swirl",
            "model_version": EXAMPLE_VERSION,
            "id": "1",
            "parameters": {"seed": 7, "sampler": "ddim", "steps": 10, "eta": 0.0, "space": "model"},
            "outputs": [{"name": "points", "datatype": "FP32", "shape": [2, 2], "data": [0.51, -1.32, -1.05, 0.27]}],
        }
    )
    model_name: str
    model_version: str = Field(description="the checkpoint id (sha256) that served the request")
    id: str | None = Field(None, description="the request's id, echoed")
    parameters: dict[str, Any] = Field(description="what was sampled: seed (drawn when not given), sampler, steps, eta, space")
    outputs: list[OutputTensor]


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="n (required), seed, sampler, steps, eta, trajectory_every or space")
    datatype: str = Field(description="INT64 for n, seed, steps, trajectory_every; FP32 for eta; BYTES for sampler and space")
    shape: list[int] = Field(description="[1]: one element")
    data: list[Any] | None = Field(None, description="the element (absent when sent as binary tensor data)")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: this tensor's bytes after the JSON header")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: send this output as binary tensor data")


class InferRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = Field(None, description="the outputs wanted (default: all)")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_output: every output as binary tensor data")
