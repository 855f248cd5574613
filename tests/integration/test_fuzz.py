"""Schemathesis against the live OpenAPI schema of a real server on the tiny checkpoint.

Positive and negative cases for every operation, a bounded budget (MAX_EXAMPLES per
operation and mode), deterministic generation. Every check schemathesis has runs on every
case (the CLI's ``--checks all``): no 5xx, every response conforms to its documented schema,
its status code, content type and headers are documented, negative data is rejected and
positive data accepted, unsupported methods get 405 with an ``Allow`` listing exactly the
path's methods, and the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 30
GENEROUS_TIMEOUT = {"anyOf": [{"type": "integer", "minimum": 30_000, "maximum": 86_400_000}, {"type": "null"}]}
load_all_checks()
ALL_CHECKS = CHECKS.get_all()  # --checks all


@pytest.fixture(scope="module")
def fuzz_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # small limits keep every generated request cheap; the limits themselves are part of what is fuzzed
    server = start_server(
        tiny_checkpoint,
        tmp_path_factory.mktemp("fuzz") / "server.log",
        SWIRL_MAX_POINTS="1000",  # the default n is valid, so that empty requests succeed
        SWIRL_MAX_RESPONSE_POINTS="5000",
        SWIRL_MAX_LOG_PROB_POINTS="200",
        SWIRL_LOG_LEVEL="warning",
    )
    try:
        yield server
    finally:
        stop_server(server)
    assert "Traceback" not in server.log(), server.log()[-3000:]


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> schemathesis.BaseSchema:
    """The live schema for positive cases: deadlines (timeout_ms) the server meets, since a few ms
    is valid yet a 504 is then the right answer."""
    return load_schema(fuzz_server, GENEROUS_TIMEOUT)


@pytest.fixture(scope="module")
def negative_schema(fuzz_server: Server) -> schemathesis.BaseSchema:
    """The live schema for negative cases: timeout_ms as documented, so its negation is invalid."""
    return load_schema(fuzz_server, None)


def load_schema(server: Server, timeout_ms: dict[str, Any] | None) -> schemathesis.BaseSchema:
    raw = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    # `model` is any string to the schema, but only the loaded names are valid: positive cases use those
    names = [m["name"] for m in httpx.get(f"{server.url}/models", timeout=30).json()["models"]]
    for operations in raw["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "model":
                    parameter["schema"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}
                if parameter["name"] == "timeout_ms" and timeout_ms is not None:
                    parameter["schema"] = timeout_ms
    # POST /sample's body: inline (the route reads its body itself: JSON, or an .npy of u) or a component
    body = raw["paths"]["/sample"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request_schema = raw["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
    request_schema["properties"]["model"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}
    if timeout_ms is not None:
        request_schema["properties"]["timeout_ms"] = timeout_ms
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.update(base_url=server.url)
    # The sampler's cross-field rules (eta for ddim only, ddpm takes T steps, steps ≤ T,
    # trajectory_every ≤ steps, the response size) cannot be written as a schema for query
    # parameters: a schema-valid request may break one, and its answer is a 422 naming the field.
    # The v2 protocol answers the same rules (and a body without inputs) with 400. Everything else
    # positive_data_acceptance expects stays as it is.
    accepted = schema.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, "400", "422"]
    return schema


# (schemathesis.pytest.from_fixture would parametrize this, but it reads an attribute pytest 9
# removed; the schema is loaded at run time here and each operation driven by its strategy.)
OPERATIONS = [
    ("GET", "/sample"),
    ("POST", "/sample"),
    ("GET", "/forward"),
    ("GET", "/schedule"),
    ("GET", "/model"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("POST", "/admin/reload"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/sample/stream"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{model}"),
    ("GET", "/v2/models/{model}/versions/{version}"),
    ("GET", "/v2/models/{model}/ready"),
    ("GET", "/v2/models/{model}/versions/{version}/ready"),
    ("POST", "/v2/models/{model}/infer"),
    ("POST", "/v2/models/{model}/versions/{version}/infer"),
    ("POST", "/log_prob"),
    ("GET", "/score"),
]


def test_the_fuzzed_operations_are_all_the_operations(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    found = {(operation.method.upper(), operation.path) for operation in operations}
    assert found == set(OPERATIONS)


WITH_PARAMETERS = {("GET", "/sample"), ("POST", "/sample"), ("GET", "/forward"), ("GET", "/sample/stream"), ("POST", "/log_prob"), ("GET", "/score")}
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in WITH_PARAMETERS]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_no_server_errors_and_documented_responses(
    api_schema: schemathesis.BaseSchema, negative_schema: schemathesis.BaseSchema, fuzz_server: Server, method: str, path: str, mode: GenerationMode
) -> None:
    operation = (api_schema if mode is GenerationMode.POSITIVE else negative_schema)[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
        case.call_and_validate(checks=ALL_CHECKS, timeout=60)

    label = "/v2" if path.startswith("/v2") else path  # /metrics labels every /v2/… path as one endpoint
    before = statuses(fuzz_server.url, label, method)
    check()
    after = statuses(fuzz_server.url, label, method)
    sent = {status: after[status] - before.get(status, 0) for status in after}
    assert sum(sent.values()) >= 1, "nothing was sent"
    assert not any(status.startswith("5") and count for status, count in sent.items()), sent
    if path in ("/sample", "/forward"):  # both outcomes were exercised
        key = "200" if mode is GenerationMode.POSITIVE else "422"
        assert sent.get(key, 0) >= 1, sent


def statuses(url: str, path: str, method: str) -> dict[str, float]:
    """swirl_requests_total for one operation, by status."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "swirl_requests_total" and labels.get("endpoint") == path and labels.get("method") == method:
                counts[labels["status"]] = sample.value
    return counts
