"""Every client error is a 4xx whose JSON names the field at fault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.app.conftest import MODULE_LOOP, assert_names_field

pytestmark = MODULE_LOOP

T = 50  # the tiny checkpoint's schedule (ScheduleConfig default)
MAX_POINTS = 20_000  # make_settings' SWIRL_MAX_POINTS

# (params, the field that must be named)
BAD_SAMPLE_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"n": 0}, "n"),
    ({"n": -1}, "n"),
    ({"n": MAX_POINTS + 1}, "n"),
    ({"n": 10**30}, "n"),
    ({"n": -(10**30)}, "n"),  # echoed back in detail[].input: must still encode
    ({"seed": 10**30}, "seed"),
    ({"n": "abc"}, "n"),
    ({"n": 1.5}, "n"),
    ({"n": True}, "n"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**53}, "seed"),
    ({"seed": 2.5}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"sampler": "euler"}, "sampler"),
    ({"sampler": ""}, "sampler"),
    ({"steps": 0}, "steps"),
    ({"steps": -3}, "steps"),
    ({"sampler": "ddim", "steps": T + 1}, "steps"),
    ({"sampler": "dpmpp2m", "steps": 10**9}, "steps"),
    ({"steps": 10}, "steps"),  # ddpm always takes T
    ({"sampler": "ddim", "steps": 2.0}, "steps"),
    ({"sampler": "ddim", "eta": -0.1}, "eta"),
    ({"sampler": "ddim", "eta": 1.5}, "eta"),
    ({"sampler": "ddim", "eta": "abc"}, "eta"),
    ({"sampler": "ddim", "eta": True}, "eta"),
    ({"eta": 0.5}, "eta"),  # only ddim has η
    ({"sampler": "dpmpp2m", "steps": 5, "eta": 1.0}, "eta"),
    ({"trajectory_every": 0}, "trajectory_every"),
    ({"trajectory_every": -1}, "trajectory_every"),
    ({"trajectory_every": T + 1}, "trajectory_every"),
    ({"sampler": "ddim", "steps": 5, "trajectory_every": 6}, "trajectory_every"),
    ({"trajectory_every": 1.5}, "trajectory_every"),
    ({"n": 5, "colour": "red"}, "colour"),
]


def query_value(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


@pytest.fixture
def http(shared_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return shared_client


@pytest.mark.parametrize(("params", "field"), BAD_SAMPLE_PARAMS, ids=[f"{f}={p.get(f, p)}" for p, f in BAD_SAMPLE_PARAMS])
async def test_bad_sample_parameter_get(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    response = await http.get("/sample", params={k: query_value(v) for k, v in params.items()})
    assert_names_field(response, field)


@pytest.mark.parametrize(("params", "field"), BAD_SAMPLE_PARAMS, ids=[f"{f}={p.get(f, p)}" for p, f in BAD_SAMPLE_PARAMS])
async def test_bad_sample_parameter_post(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    response = await http.post("/sample", json=params)
    assert_names_field(response, field)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
async def test_non_finite_eta_in_the_query(http: httpx.AsyncClient, raw: str) -> None:
    assert_names_field(await http.get("/sample", params={"sampler": "ddim", "eta": raw}), "eta")


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_eta_in_the_body(http: httpx.AsyncClient, raw: str) -> None:
    body = '{"sampler": "ddim", "eta": ' + raw + "}"
    assert_names_field(await http.post("/sample", content=body, headers={"content-type": "application/json"}), "eta")


async def test_empty_and_float_strings_for_integers_in_the_query(http: httpx.AsyncClient) -> None:
    for value in ("", "1.0", "1e3", "true", "0x10", "٣"):
        assert_names_field(await http.get("/sample", params={"n": value}), "n")


async def test_trajectory_response_size_limit(http: httpx.AsyncClient) -> None:
    # n × (frames + 1) = 100 × (51 + 1) > 2000 (max_response_points of this app)
    response = await http.get("/sample", params={"n": 100, "trajectory_every": 1})
    assert_names_field(response, "trajectory_every")
    assert "SWIRL_MAX_RESPONSE_POINTS" in response.json()["error"]
    # within the limit: 20 × (1 + 10 + 1) = 240
    assert (await http.get("/sample", params={"n": 20, "trajectory_every": 5})).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"t": -1}, "t"),
        ({"t": T + 1}, "t"),
        ({"t": 10**20}, "t"),
        ({"t": 1.5}, "t"),
        ({"t": "abc"}, "t"),
        ({}, "t"),  # t is required
        ({"t": 3, "n": 0}, "n"),
        ({"t": 3, "n": -5}, "n"),
        ({"t": 3, "n": MAX_POINTS + 1}, "n"),
        ({"t": 3, "n": "x"}, "n"),
        ({"t": 3, "seed": -1}, "seed"),
        ({"t": 3, "seed": "nan"}, "seed"),
        ({"t": 3, "extra": 1}, "extra"),
    ],
)
async def test_bad_forward_parameter(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_names_field(await http.get("/forward", params=params), field)


async def test_forward_t_bounds_are_inclusive(http: httpx.AsyncClient) -> None:
    for t in (0, T):
        assert (await http.get("/forward", params={"t": t, "n": 3})).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": 5,',  # truncated
        b"{n: 5}",  # not JSON
        b"[1, 2, 3]",  # an array, not an object
        b'"n=5"',
        b"null",
        b"",
    ],
)
async def test_malformed_body_is_422_naming_the_body(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post("/sample", content=body, headers={"content-type": "application/json"})
    assert_names_field(response, "body")


async def test_undecodable_body_is_a_client_error_naming_the_body(http: httpx.AsyncClient) -> None:
    response = await http.post("/sample", content=b"\xff\xfe\x00{", headers={"content-type": "application/json"})
    assert_names_field(response, "body")  # 422, as the OpenAPI document says


async def test_deeply_nested_body_is_a_client_error(http: httpx.AsyncClient) -> None:
    response = await http.post("/sample", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert_names_field(response, "body")


async def test_extra_fields_are_refused(http: httpx.AsyncClient) -> None:
    assert_names_field(await http.post("/sample", json={"n": 5, "seed": 1, "temperature": 2}), "temperature")
    assert_names_field(await http.get("/sample", params={"n": 5, "temperature": 2}), "temperature")


async def test_oversized_body_with_content_length_is_413(http: httpx.AsyncClient) -> None:
    body = b'{"n": 5, "seed": 1, "pad": "' + b"x" * 4_000_000 + b'"}'
    response = await http.post("/sample", content=body, headers={"content-type": "application/json"})
    assert_names_field(response, "body", status=413)
    assert "SWIRL_MAX_BODY_BYTES" in response.json()["error"]


async def test_oversized_streamed_body_without_content_length_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"n": 5, "seed": 1, "pad": "'
        for _ in range(40):
            yield b"x" * 100_000  # past the limit of a POST /sample body (it may carry u: SWIRL_MAX_BODY_BYTES + 32 × SWIRL_MAX_POINTS)
        yield b'"}'

    response = await http.post("/sample", content=chunks(), headers={"content-type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_names_field(response, "body", status=413)


async def test_small_streamed_body_is_accepted(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"n": 5,'
        yield b' "seed": 1}'

    response = await http.post("/sample", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(response.json()["points"]) == 5


async def test_unknown_path_and_method(http: httpx.AsyncClient) -> None:
    missing = await http.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = await http.delete("/sample")
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_a_405_lists_every_method_the_path_supports_on_every_route(http: httpx.AsyncClient) -> None:
    """RFC 9110 §15.5.6: Allow names all the methods of the resource, over every route on its
    path (``/sample`` takes GET and POST), HEAD wherever GET is; checked for every documented path."""
    schema = (await http.get("/openapi.json")).json()
    filled = {"{name}": "tiny", "{model}": "swirl", "{version}": "1"}
    assert schema["paths"]
    for template, operations in schema["paths"].items():
        path = template
        for placeholder, value in filled.items():
            path = path.replace(placeholder, value)
        documented = {method.upper() for method in operations}
        expected = documented | ({"HEAD"} if "GET" in documented else set())
        for method in ("OPTIONS", "PUT", "DELETE", "PATCH"):
            response = await http.request(method, path)
            assert response.status_code == 405, (method, path, response.status_code)
            assert set(response.headers["allow"].split(", ")) == expected, (method, path, response.headers["allow"])
