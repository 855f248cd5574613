"""A guided model over HTTP: u and guidance on /sample (GET, POST JSON, POST .npy), /sample/stream
and v2, the same points as the engine in-process, /model and /models showing the condition, the
body limit for bodies that carry u, admission counting a guided row twice, and every bad input."""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
import torch
from asgi_lifespan import LifespanManager

from app.main import create_app
from model.checkpoint import condition_record, load_checkpoint, save_checkpoint
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec
from model.engine import sample
from model.net import NetConfig
from model.train import TrainConfig, train
from tests.app.conftest import assert_names_field
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_POINTS = 2_000
MAX_BODY = 1_024
GUIDED = "tiny-guided"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A model repository with a small guided model (trained briefly, for real) next to the unconditional tiny one."""
    net = NetConfig(hidden=16, depth=2, time_embedding_dim=8, condition="arc_position", condition_embedding_dim=8)
    config = TrainConfig(steps=100, batch_size=128, warmup_steps=10, n_train=2000, net=net)
    result = train(config, torch.device("cpu"), progress=False)
    root = tmp_path_factory.mktemp("repository")
    extra = {"condition": condition_record(net, config.condition_dropout)}
    save_checkpoint(root / GUIDED, result.net, config.schedule, result.normalisation, result.summary, extra=extra)
    shutil.copytree(tiny_checkpoint, root / "tiny")
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(repository: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(repository, models=str(repository), default_model=GUIDED, max_points=MAX_POINTS, max_body_bytes=MAX_BODY)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=300) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as client:
            yield client


def in_process(repository: Path, n: int, seed: int, spec: SamplerSpec, u: Any = None, guidance: float = 0.0) -> np.ndarray:
    checkpoint = load_checkpoint(repository / GUIDED)
    return sample(NetDenoiser(checkpoint.net, "cpu"), checkpoint.plan(spec), n, seed, u=u, guidance=guidance).x0.numpy()


def points(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["points"], dtype=np.float32)


async def test_model_and_models_show_the_condition(http: httpx.AsyncClient) -> None:
    model = (await http.get("/model")).json()
    assert model["net"]["condition"] == "arc_position"
    assert model["condition"] == {"kind": "arc_position", "range": [0.0, 1.0], "null_probability": 0.1, "default_guidance": 0.25}
    listed = {item["name"]: item for item in (await http.get("/models")).json()["models"]}
    assert listed[GUIDED]["condition"]["kind"] == "arc_position" and listed["tiny"]["condition"] is None
    assert (await http.get("/model", params={"model": "tiny"})).json()["condition"] is None


@pytest.mark.parametrize(("u", "guidance"), [(None, None), (0.3, 1.0), (0.8, 0.0), (0.5, None)])
async def test_get_and_post_give_the_engines_points(http: httpx.AsyncClient, repository: Path, u: float | None, guidance: float | None) -> None:
    params: dict[str, Any] = {"n": 60, "seed": 9, "sampler": "ddim", "steps": 10}
    if u is not None:
        params["u"] = u
    if guidance is not None:
        params["guidance"] = guidance
    got = await http.get("/sample", params=params)
    posted = await http.post("/sample", json=params)
    used = 0.0 if u is None else 0.25 if guidance is None else guidance  # u alone: the model's default guidance
    expected = in_process(repository, 60, 9, SamplerSpec("ddim", steps=10), u=u, guidance=used)
    np.testing.assert_array_equal(points(got), expected)
    np.testing.assert_array_equal(points(posted), expected)
    body = got.json()
    if u is None:
        assert "u" not in body and "guidance" not in body and "swirl-u" not in got.headers
    else:
        assert body["u"] == u and body["guidance"] == used
        assert got.headers["swirl-u"] == repr(u) and got.headers["swirl-guidance"] == repr(used)


async def test_u_per_point_as_a_json_list_or_an_npy_body(http: httpx.AsyncClient, repository: Path) -> None:
    n = MAX_POINTS  # the largest list: 2,000 values, far over SWIRL_MAX_BODY_BYTES = 1,024
    u = np.random.default_rng(0).uniform(0, 1, n)
    listed = await http.post("/sample", json={"n": n, "seed": 4, "sampler": "dpmpp2m", "steps": 5, "u": u.tolist(), "guidance": 1.0})
    buffer = io.BytesIO()
    np.save(buffer, u)
    npy = await http.post(
        "/sample",
        params={"n": n, "seed": 4, "sampler": "dpmpp2m", "steps": 5, "guidance": 1.0},
        content=buffer.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    expected = in_process(repository, n, 4, SamplerSpec("dpmpp2m", steps=5), u=u, guidance=1.0)
    np.testing.assert_array_equal(points(listed), expected)
    np.testing.assert_array_equal(points(npy), expected)
    assert listed.json()["u"] == "per-point" and npy.headers["swirl-u"] == "per-point"


async def test_the_stream_ends_at_the_same_guided_points(http: httpx.AsyncClient) -> None:
    params = {"n": 20, "seed": 3, "sampler": "ddim", "steps": 5, "u": 0.6, "guidance": 2.0}
    final = None
    async with http.stream("GET", "/sample/stream", params=params) as response:
        assert response.status_code == 200
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "frame":
                final = line[6:]
    assert final is not None
    import orjson

    frame = orjson.loads(final)
    assert frame["t"] == 0
    np.testing.assert_array_equal(np.asarray(frame["points"], dtype=np.float32), points(await http.get("/sample", params=params)))


async def test_v2_takes_u_and_guidance(http: httpx.AsyncClient) -> None:
    u = [0.1, 0.4, 0.9]
    inputs = [
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [3]},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [5]},
        {"name": "u", "datatype": "FP32", "shape": [3], "data": u},
        {"name": "guidance", "datatype": "FP32", "shape": [1], "data": [0.5]},
    ]
    response = await http.post("/v2/models/swirl/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["parameters"]["u"] == "per-point" and body["parameters"]["guidance"] == 0.5
    got = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(got, points(await http.post("/sample", json={"n": 3, "seed": 5, "u": u, "guidance": 0.5})))
    metadata = (await http.get("/v2/models/swirl")).json()
    assert {"name": "u", "datatype": "FP32", "shape": [-1]} in metadata["inputs"]
    assert "u" not in [item["name"] for item in (await http.get("/v2/models/tiny")).json()["inputs"]]
    wrong_length = {"name": "u", "datatype": "FP32", "shape": [2], "data": [0.1, 0.2]}
    out_of_range = {"name": "u", "datatype": "FP32", "shape": [1], "data": [1.5]}
    for bad in (wrong_length, out_of_range):  # the protocol's errors are 400s naming the input
        refused = await http.post("/v2/models/swirl/infer", json={"inputs": [inputs[0], bad]})
        assert refused.status_code == 400 and "input 'u'" in refused.json()["error"], refused.text
    unconditional = await http.post("/v2/models/tiny/infer", json={"inputs": [inputs[0], inputs[2]]})
    assert unconditional.status_code == 400 and "input 'u'" in unconditional.json()["error"]


BAD_GET: list[tuple[dict[str, Any], str]] = [
    ({"u": 1.5}, "u"),
    ({"u": -0.1}, "u"),
    ({"u": "nan"}, "u"),
    ({"u": "inf"}, "u"),
    ({"u": "abc"}, "u"),
    ({"u": 0.5, "guidance": -1}, "guidance"),
    ({"u": 0.5, "guidance": 11}, "guidance"),
    ({"u": 0.5, "guidance": "nan"}, "guidance"),
    ({"guidance": 1.0}, "guidance"),  # guidance without u
    ({"u": 0.5, "model": "tiny"}, "u"),  # a model without a condition
    ({"guidance": 0.5, "model": "tiny"}, "guidance"),
]


@pytest.mark.parametrize(("params", "field"), BAD_GET)
async def test_bad_query_is_422_naming_the_field(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_names_field(await http.get("/sample", params={"n": 5, **params}), field)
    assert_names_field(await http.get("/sample/stream", params={"n": 5, **params}), field)


BAD_POST: list[tuple[dict[str, Any], str]] = [
    ({"u": [0.1, 0.2]}, "u"),  # n = 5 values needed
    ({"u": [0.1, 0.2, 0.3, 0.4, 1.2]}, "u"),
    ({"u": True}, "u"),
    ({"u": [0.1, True, 0.3, 0.4, 0.5]}, "u"),
    ({"u": "0.5x"}, "u"),
    ({"u": [0.1, 0.2, 0.3, 0.4, 0.5], "guidance": -0.5}, "guidance"),
    ({"u": [0.1, 0.2, 0.3, 0.4, 0.5], "model": "tiny"}, "u"),
]


@pytest.mark.parametrize(("params", "field"), BAD_POST)
async def test_bad_body_is_422_naming_the_field(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_names_field(await http.post("/sample", json={"n": 5, **params}), field)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"not an npy", {}),
        (npy_bytes(np.zeros((5, 2))), {}),  # 2-D
        (npy_bytes(np.array(["a"] * 5)), {}),  # not numbers
        (npy_bytes(np.full(5, 0.5)), {"u": 0.5}),  # u twice
        (npy_bytes(np.full(4, 0.5)), {}),  # length is not n
        (npy_bytes(np.full(5, 2.0)), {}),  # outside [0, 1]
        (npy_bytes(np.full(MAX_POINTS + 1, 0.5)), {}),  # more values than SWIRL_MAX_POINTS
    ],
)
async def test_bad_npy_body_is_422_naming_u(http: httpx.AsyncClient, body: bytes, query: dict[str, Any]) -> None:
    response = await http.post("/sample", params={"n": 5, **query}, content=body, headers={"content-type": "application/x-npy"})
    assert_names_field(response, "u")


async def test_the_body_limit_for_u_is_sized_from_max_points_and_enforced_before_reading(http: httpx.AsyncClient) -> None:
    limit = MAX_BODY + 32 * MAX_POINTS
    declared = await http.post("/sample", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert_names_field(declared, "body", status=413)
    assert str(limit) in declared.json()["error"]
    read: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            read.append(1)
            yield b"x" * 10_000

    streamed = await http.post("/sample", content=chunks(), headers={"content-type": "application/json"})
    assert_names_field(streamed, "body", status=413)
    assert len(read) < 100  # refused part-way: never read whole
    # other bodies keep SWIRL_MAX_BODY_BYTES
    other = await http.post("/admin/reload", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"})
    assert other.status_code == 413 and str(MAX_BODY) in other.json()["error"]


async def test_admission_counts_a_guided_row_as_two_evaluations(repository: Path) -> None:
    settings = make_settings(repository, models=str(repository), default_model=GUIDED, max_queue_work=150)
    async with LifespanManager(create_app(settings), startup_timeout=300) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as client:
            base = {"n": 10, "seed": 1, "sampler": "ddim", "steps": 10, "u": 0.5}
            assert (await client.get("/sample", params={**base, "guidance": 0})).status_code == 200  # 10 × 10 = 100
            refused = await client.get("/sample", params={**base, "guidance": 1})  # 10 × 10 × 2 = 200 > 150
            assert_names_field(refused, "n")
            assert "= 200 exceeds SWIRL_MAX_QUEUE_WORK" in refused.json()["error"]


async def test_grpc_takes_u_and_guidance_like_http(repository: Path) -> None:
    from app.wire import grpc_messages as pb
    from tests.app.routes.test_grpc_v2 import grpc_app, points_of

    overrides = {"models": str(repository), "default_model": GUIDED, "max_points": MAX_POINTS}
    async with grpc_app(repository, **overrides) as app:
        request = pb.ModelInferRequest(model_name="swirl")
        request.inputs.add(name="n", datatype="INT64", shape=[1]).contents.int64_contents.append(3)
        request.inputs.add(name="seed", datatype="INT64", shape=[1]).contents.int64_contents.append(5)
        request.inputs.add(name="u", datatype="FP32", shape=[3]).contents.fp32_contents.extend([0.1, 0.4, 0.9])
        request.inputs.add(name="guidance", datatype="FP32", shape=[1]).contents.fp32_contents.append(0.5)
        response = await app.call("ModelInfer", request)
        assert response.parameters["u"].string_param == "per-point" and response.parameters["guidance"].double_param == 0.5
        expected = points(await app.http.post("/sample", json={"n": 3, "seed": 5, "u": [0.1, 0.4, 0.9], "guidance": 0.5}))
        np.testing.assert_array_equal(points_of(response), expected)
        metadata = await app.call("ModelMetadata", pb.ModelMetadataRequest(name="swirl"))
        assert [(t.name, list(t.shape)) for t in metadata.inputs if t.name in ("u", "guidance")] == [("u", [-1]), ("guidance", [1])]
