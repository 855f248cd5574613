"""/sample and /forward in-process: shapes, defaults, reproducibility, samplers, trajectories."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from model.checkpoint import read_metadata
from model.data import Normalisation, swiss_roll
from model.engine import frame_count as trajectory_frames
from tests.app.conftest import MODULE_LOOP, as_points

pytestmark = MODULE_LOOP

SAMPLE_FIELDS = {"n", "seed", "sampler", "steps", "eta", "model", "model_name", "space", "points"}


@pytest.fixture
def client(shared_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return shared_client


def normalisation_of(checkpoint: Path) -> Normalisation:
    data = read_metadata(checkpoint)["data"]
    return Normalisation(noise=data["noise"], mean=(data["mean"][0], data["mean"][1]), scale=data["scale"])


async def get_sample(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/sample", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_sample(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.post("/sample", json=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- /forward ------------------------------------------------------------------------------


async def test_forward_shape_and_fields(client: httpx.AsyncClient) -> None:
    response = await client.get("/forward", params={"t": 10, "n": 123, "seed": 4})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"t", "n", "seed", "alpha_bar", "model", "model_name", "space", "points"}
    assert body["t"] == 10 and body["n"] == 123 and body["seed"] == 4
    assert as_points(body).shape == (123, 2)
    schedule = (await client.get("/schedule")).json()
    assert body["alpha_bar"] == pytest.approx(schedule["alpha_bar"][9], rel=1e-12)


async def test_forward_at_t0_is_the_normalised_clean_roll(client: httpx.AsyncClient, tiny_checkpoint: Path) -> None:
    body = (await client.get("/forward", params={"t": 0, "n": 500, "seed": 11})).json()
    assert body["alpha_bar"] == 1.0
    norm = normalisation_of(tiny_checkpoint)
    expected = norm.normalise(swiss_roll(500, norm.noise, seed=11))
    np.testing.assert_allclose(as_points(body), expected, atol=1e-5)
    other = (await client.get("/forward", params={"t": 0, "n": 500, "seed": 12})).json()
    assert not np.allclose(as_points(other), expected)


async def test_forward_is_reproducible_and_noised_by_the_schedule(client: httpx.AsyncClient) -> None:
    T = (await client.get("/schedule")).json()["timesteps"]
    params = {"t": T, "n": 400, "seed": 99}
    first, second = [(await client.get("/forward", params=params)).json() for _ in range(2)]
    np.testing.assert_array_equal(as_points(first), as_points(second))
    # the same seed noises the same clean points: x_t = √ᾱ x_0 + √(1 − ᾱ) ε exactly
    clean = as_points((await client.get("/forward", params={**params, "t": 0})).json())
    alpha_bar = first["alpha_bar"]
    eps = (as_points(first) - math.sqrt(alpha_bar) * clean) / math.sqrt(1 - alpha_bar)
    assert abs(eps.mean()) < 0.15 and 0.85 < eps.std() < 1.15
    # a fresh seed when omitted, returned so the draw can be replayed
    picked = (await client.get("/forward", params={"t": 5, "n": 20})).json()
    replay = (await client.get("/forward", params={"t": 5, "n": 20, "seed": picked["seed"]})).json()
    np.testing.assert_array_equal(as_points(picked), as_points(replay))


# -- /sample -------------------------------------------------------------------------------


async def test_sample_defaults_to_ddpm_with_T_steps(client: httpx.AsyncClient) -> None:
    T = (await client.get("/schedule")).json()["timesteps"]
    model_id = (await client.get("/model")).json()["id"]
    body = await get_sample(client, n=50, seed=1)
    assert set(body) == SAMPLE_FIELDS
    assert body["sampler"] == "ddpm" and body["steps"] == T and body["eta"] == 0.0
    assert body["model"] == model_id
    points = as_points(body)
    assert points.shape == (50, 2) and np.isfinite(points).all()


async def test_get_and_post_give_the_same_answer(client: httpx.AsyncClient) -> None:
    cases: list[dict[str, Any]] = [
        {"n": 64, "seed": 5},
        {"n": 30, "seed": 6, "sampler": "ddim", "steps": 7, "eta": 0.5},
        {"n": 20, "seed": 9, "sampler": "dpmpp2m", "steps": 5},
    ]
    for params in cases:
        via_get = await get_sample(client, **params)
        via_post = await post_sample(client, **params)
        assert via_get == via_post, params


async def test_same_seed_same_points_and_different_seed_different_points(client: httpx.AsyncClient) -> None:
    first = as_points(await get_sample(client, n=100, seed=42))
    second = as_points(await get_sample(client, n=100, seed=42))
    np.testing.assert_array_equal(first, second)
    other = as_points(await get_sample(client, n=100, seed=43))
    assert not np.allclose(first, other)


async def test_omitted_seed_is_picked_returned_and_replayable(client: httpx.AsyncClient) -> None:
    first = await get_sample(client, n=40)
    second = await post_sample(client, n=40)
    assert isinstance(first["seed"], int) and first["seed"] >= 0
    assert first["seed"] != second["seed"]
    replay = await get_sample(client, n=40, seed=first["seed"])
    np.testing.assert_array_equal(as_points(replay), as_points(first))


@pytest.mark.parametrize("steps", [1, 2, 13])
async def test_ddim_any_number_of_steps(client: httpx.AsyncClient, steps: int) -> None:
    body = await get_sample(client, n=30, seed=2, sampler="ddim", steps=steps)
    assert body["sampler"] == "ddim" and body["steps"] == steps
    assert np.isfinite(as_points(body)).all()


async def test_ddim_with_T_steps_and_default_steps(client: httpx.AsyncClient) -> None:
    T = (await client.get("/schedule")).json()["timesteps"]
    explicit = await get_sample(client, n=30, seed=2, sampler="ddim", steps=T)
    default = await get_sample(client, n=30, seed=2, sampler="ddim")
    assert default["steps"] == T
    assert explicit == default


async def test_ddim_eta(client: httpx.AsyncClient) -> None:
    deterministic = as_points(await get_sample(client, n=50, seed=3, sampler="ddim", steps=10, eta=0.0))
    noisy = await get_sample(client, n=50, seed=3, sampler="ddim", steps=10, eta=1.0)
    assert noisy["eta"] == 1.0
    assert not np.allclose(deterministic, as_points(noisy))  # η > 0 draws fresh noise each step
    again = await get_sample(client, n=50, seed=3, sampler="ddim", steps=10, eta=1.0)
    assert again == noisy


async def test_dpmpp2m(client: httpx.AsyncClient) -> None:
    body = await post_sample(client, n=60, seed=8, sampler="dpmpp2m", steps=10)
    assert body["sampler"] == "dpmpp2m" and body["steps"] == 10
    points = as_points(body)
    assert points.shape == (60, 2) and np.isfinite(points).all()
    ddim = as_points(await post_sample(client, n=60, seed=8, sampler="ddim", steps=10))
    assert not np.array_equal(points, ddim)


@pytest.mark.parametrize(("sampler", "steps", "every"), [("ddpm", None, 7), ("ddim", 10, 3), ("dpmpp2m", 6, 1), ("ddim", 5, 5)])
async def test_trajectory_runs_from_T_to_0_and_ends_at_the_points(client: httpx.AsyncClient, sampler: str, steps: int | None, every: int) -> None:
    T = (await client.get("/schedule")).json()["timesteps"]
    params: dict[str, Any] = {"n": 25, "seed": 17, "sampler": sampler, "trajectory_every": every}
    if steps is not None:
        params["steps"] = steps
    body = await get_sample(client, **params)
    frames = body["trajectory"]
    assert len(frames) == trajectory_frames(steps or T, every)
    ts = [frame["t"] for frame in frames]
    assert ts[0] == T and ts[-1] == 0 and ts == sorted(ts, reverse=True) and len(set(ts)) == len(ts)
    for frame in frames:
        assert as_points(frame).shape == (25, 2)
    np.testing.assert_array_equal(as_points(frames[-1]), as_points(body))
    # asking for the trajectory does not change the samples
    plain = await get_sample(client, **{k: v for k, v in params.items() if k != "trajectory_every"})
    assert "trajectory" not in plain
    np.testing.assert_allclose(as_points(plain), as_points(body), atol=1e-6)


async def test_sample_points_look_like_the_normalised_roll(client: httpx.AsyncClient) -> None:
    """Even the tiny checkpoint maps N(0, I) to something centred with unit-ish spread."""
    points = as_points(await get_sample(client, n=2000, seed=0, sampler="ddim", steps=20))
    assert np.abs(points.mean(axis=0)).max() < 0.3
    assert 0.5 < points.std() < 1.5
