"""The Open Inference Protocol's gRPC messages and service, built from grpc_predict_v2.proto.

The message classes live in a private descriptor pool, not protobuf's default one: tritonclient
(and any other KServe client or server) registers the same ``inference.*`` names in the default
pool, and two definitions of one name there refuse to load together. On the wire only the
field numbers count, so a private pool changes nothing for clients.

``METHODS`` maps each call of ``inference.GRPCInferenceService`` to its request and response
classes; ``app/routes/grpc_server.py`` serves them with grpcio's generic handlers, as the code that
grpcio-tools generates would.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, message_factory

from app.wire.grpc_predict_v2_descriptor import FILE_DESCRIPTOR

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"

POOL = descriptor_pool.DescriptorPool()
FILE = POOL.AddSerializedFile(FILE_DESCRIPTOR)


def message(name: str) -> Any:
    """The class of ``inference.<name>``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


ServerLiveRequest = message("ServerLiveRequest")
ServerLiveResponse = message("ServerLiveResponse")
ServerReadyRequest = message("ServerReadyRequest")
ServerReadyResponse = message("ServerReadyResponse")
ModelReadyRequest = message("ModelReadyRequest")
ModelReadyResponse = message("ModelReadyResponse")
ServerMetadataRequest = message("ServerMetadataRequest")
ServerMetadataResponse = message("ServerMetadataResponse")
ModelMetadataRequest = message("ModelMetadataRequest")
ModelMetadataResponse = message("ModelMetadataResponse")
ModelInferRequest = message("ModelInferRequest")
ModelInferResponse = message("ModelInferResponse")
InferParameter = message("InferParameter")
InferTensorContents = message("InferTensorContents")

METHODS: dict[str, tuple[Any, Any]] = {
    method.name: (message(method.input_type.name), message(method.output_type.name)) for method in POOL.FindServiceByName(SERVICE).methods
}
"""Call name → (request class, response class), in the .proto's order."""


def method_path(name: str) -> str:
    """The HTTP/2 path of a call: ``/inference.GRPCInferenceService/ModelInfer``."""
    return f"/{SERVICE}/{name}"
