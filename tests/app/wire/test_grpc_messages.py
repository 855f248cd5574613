"""The shipped gRPC descriptor is the .proto compiled, and its messages are tritonclient's on the wire."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2 as triton

from app.wire import grpc_messages as pb
from app.wire.grpc_predict_v2_descriptor import FILE_DESCRIPTOR

ROOT = Path(__file__).resolve().parents[3]


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_grpc", ROOT / "scripts" / "generate_grpc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_descriptor_is_the_proto_compiled() -> None:
    gen = generator()
    compiled = gen.compile_proto()
    assert compiled == FILE_DESCRIPTOR, "app/wire/grpc_predict_v2.proto changed: run .venv/bin/python scripts/generate_grpc.py"
    assert gen.MODULE.read_text() == gen.module_source(compiled)


def layout(descriptor: Descriptor) -> dict[str, Any]:
    """What travels on the wire: field number → (name, type, repeated, nested layout or oneof)."""
    fields: dict[str, Any] = {}
    for field in descriptor.fields:
        nested = layout(field.message_type) if field.message_type is not None else None
        oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        fields[str(field.number)] = (field.name, field.type, field.is_repeated, nested, oneof)
    return fields


def test_every_message_matches_tritonclients_field_for_field() -> None:
    service = pb.POOL.FindServiceByName(pb.SERVICE)
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        for ours, their in ((method.input_type, other.input_type), (method.output_type, other.output_type)):
            assert ours.full_name == their.full_name
            assert layout(ours) == layout(their), ours.full_name


def test_the_service_has_the_protocols_six_calls() -> None:
    assert list(pb.METHODS) == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]
    assert pb.method_path("ModelInfer") == "/inference.GRPCInferenceService/ModelInfer"
