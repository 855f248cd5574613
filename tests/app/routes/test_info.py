"""The descriptive endpoints: /schedule, /model, /healthz, /readyz, /metrics, /docs, /openapi.json."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from app.main import create_app
from model.checkpoint import read_metadata
from model.schedule import Schedule, ScheduleConfig
from tests.app.conftest import AppFactory, metric, metric_samples
from tests.conftest import make_settings

SCHEDULE_ARRAYS = ("beta", "alpha", "alpha_bar", "posterior_variance")


def independent_schedule(config: dict[str, float | int | str]) -> dict[str, np.ndarray]:
    """The linear schedule of Ho et al. written out again with numpy (float64), index i = step i + 1."""
    assert config["kind"] == "linear"
    T = int(config["timesteps"])
    beta = np.linspace(float(config["beta_start"]), float(config["beta_end"]), T, dtype=np.float64)
    alpha = 1.0 - beta
    alpha_bar = np.cumprod(alpha)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    return {"beta": beta, "alpha": alpha, "alpha_bar": alpha_bar, "posterior_variance": beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)}


async def test_schedule_matches_the_checkpoint_config(client: httpx.AsyncClient, tiny_checkpoint: Path) -> None:
    response = await client.get("/schedule")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"timesteps", "kind", "beta_start", "beta_end", *SCHEDULE_ARRAYS}
    config = read_metadata(tiny_checkpoint)["schedule"]
    T = config["timesteps"]
    assert body["timesteps"] == T and body["kind"] == config["kind"]
    assert body["beta_start"] == config["beta_start"] and body["beta_end"] == config["beta_end"]
    expected = independent_schedule(config)
    reference = Schedule.from_config(ScheduleConfig.from_dict(config))
    for key in SCHEDULE_ARRAYS:
        values = np.asarray(body[key], dtype=np.float64)
        assert values.shape == (T,), key
        np.testing.assert_allclose(values, expected[key], rtol=1e-12, atol=1e-15, err_msg=key)
    np.testing.assert_allclose(body["alpha_bar"], reference.alpha_bars, rtol=1e-12)
    # entry i is step t = i + 1: β_1 = beta_start, β_T = beta_end, ᾱ_1 = α_1
    assert body["beta"][0] == config["beta_start"] and abs(body["beta"][-1] - config["beta_end"]) < 1e-15
    assert body["alpha_bar"][0] == body["alpha"][0]
    assert body["posterior_variance"][0] == 0.0  # β̃_1 = 0: ᾱ_0 = 1


async def test_model_describes_the_loaded_checkpoint(client: httpx.AsyncClient, tiny_checkpoint: Path) -> None:
    response = await client.get("/model")
    assert response.status_code == 200
    body = response.json()
    meta = read_metadata(tiny_checkpoint)
    assert body["id"] == meta["weights_sha256"] and len(body["id"]) == 64
    assert body["net"] == meta["net"]
    assert isinstance(body["parameter_count"], int) and body["parameter_count"] > 0
    schedule = body["schedule"]
    for key, value in meta["schedule"].items():
        assert schedule[key] == value, key
    expected_final = Schedule.from_config(ScheduleConfig.from_dict(meta["schedule"])).alpha_bar_final
    assert abs(schedule["alpha_bar_final"] - expected_final) < 1e-12
    assert body["training"]["steps"] == meta["training"]["steps"]
    assert isinstance(body["evaluation"], dict)
    assert body["data"] == {"noise": meta["data"]["noise"], "mean": meta["data"]["mean"], "scale": meta["data"]["scale"]}
    assert body["device"] == "cpu"
    assert set(body["samplers"]) == {"ddpm", "ddim", "dpmpp2m"}


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["model"] == (await client.get("/model")).json()["id"]
    assert body["queue_depth"] == 0


async def test_readyz_is_503_while_the_service_is_not_ready(running_app: AppFactory) -> None:
    async with running_app() as r:
        r.service.ready = False
        response = await r.http.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "not ready"
        assert (await r.http.get("/healthz")).status_code == 200  # liveness is not readiness
        r.service.ready = True
        assert (await r.http.get("/readyz")).status_code == 200


async def test_readyz_is_503_before_the_lifespan_has_loaded_the_model(tiny_checkpoint: Path) -> None:
    app = create_app(make_settings(tiny_checkpoint))  # no lifespan: nothing loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://swirl.test") as http:
        response = await http.get("/readyz")
        assert response.status_code == 503 and "not ready" in response.json()["error"]
        assert response.headers["retry-after"] == "1"
        assert (await http.get("/sample", params={"n": 3})).status_code == 503
        assert (await http.get("/healthz")).status_code == 200


async def test_metrics_are_prometheus_text_and_count_requests(client: httpx.AsyncClient) -> None:
    before = await client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    for name in (
        "swirl_requests_total",
        "swirl_request_seconds",
        "swirl_request_points",
        "swirl_requests_in_flight",
        "swirl_engine_ticks_total",
        "swirl_engine_tick_rows",
        "swirl_queue_work",
        "swirl_points_generated_total",
    ):
        assert name in before.text, name
    old = metric_samples(before.text)
    assert (await client.get("/sample", params={"n": 7, "seed": 1})).status_code == 200
    assert (await client.get("/forward", params={"t": 3, "n": 5, "seed": 1})).status_code == 200
    assert (await client.get("/sample", params={"n": 0})).status_code == 422
    new = metric_samples((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return metric(new, name, **labels) - metric(old, name, **labels)

    assert delta("swirl_requests_total", endpoint="/sample", method="GET", status="200") == 1
    assert delta("swirl_requests_total", endpoint="/sample", method="GET", status="422") == 1
    assert delta("swirl_requests_total", endpoint="/forward", method="GET", status="200") == 1
    assert delta("swirl_request_seconds_count", endpoint="/sample") == 2
    assert delta("swirl_points_generated_total", endpoint="sample") == 7
    assert delta("swirl_points_generated_total", endpoint="forward") == 5
    assert delta("swirl_request_points_count") == 1 and delta("swirl_request_points_sum") == 7
    assert metric(new, "swirl_requests_in_flight") == 0 and metric(new, "swirl_queue_work") == 0
    assert delta("swirl_engine_ticks_total") >= 50  # one DDPM-50 request: at least 50 ticks
    assert delta("swirl_sample_seconds_count", sampler="ddpm") == 1
    assert metric(new, "swirl_ready") == 1


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = (await client.get("/openapi.json")).json()
    for path in ("/sample", "/forward", "/schedule", "/model", "/healthz", "/readyz", "/metrics"):
        assert path in schema["paths"], path
    assert set(schema["paths"]["/sample"]) == {"get", "post"}


SAMPLE_PARAMETERS = {"n", "seed", "sampler", "steps", "eta", "trajectory_every", "space", "model", "u", "guidance", "priority", "timeout_ms"}


async def test_every_sampling_parameter_has_an_example(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    def has_example(item: dict[str, object]) -> bool:
        return "example" in item or bool(item.get("examples"))

    for path, expected in (
        ("/sample", SAMPLE_PARAMETERS),
        ("/forward", {"t", "n", "seed", "space", "model"}),
    ):
        parameters = schema["paths"][path]["get"]["parameters"]
        assert {p["name"] for p in parameters} == expected, path
        for parameter in parameters:
            assert has_example(parameter) or has_example(parameter["schema"]), (path, parameter["name"])
    body = schema["paths"]["/sample"]["post"]["requestBody"]["content"]["application/json"]
    assert body.get("examples") or body.get("example")
    # inline (the route reads its body itself: JSON, or an .npy of u), or a component
    request_schema = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]] if "$ref" in body["schema"] else body["schema"]
    assert set(request_schema["properties"]) == SAMPLE_PARAMETERS
    for name, prop in request_schema["properties"].items():
        assert has_example(prop), name
    assert request_schema.get("additionalProperties") is False
