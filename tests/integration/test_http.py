"""A real server on the shipped checkpoint (or SWIRL_BASE_URL, e.g. the container), over HTTP only.

Nothing here reads local files: the checkpoint's facts come from /model and /schedule, and
the reference math from the ``model`` package.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import numpy as np
import pytest

from model.data import Normalisation, swiss_roll

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(120.0)


def get_json(url: str, path: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{url}{path}", params=params, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def points_of(body: dict[str, Any]) -> np.ndarray:
    array = np.asarray(body["points"], dtype=np.float64)
    assert array.ndim == 2 and array.shape[1] == 2
    return array


def test_the_server_is_ready_and_describes_its_model(live_server: str) -> None:
    ready = get_json(live_server, "/readyz")
    model = get_json(live_server, "/model")
    assert ready["status"] == "ready" and ready["model"] == model["id"]
    schedule = get_json(live_server, "/schedule")
    assert schedule["timesteps"] == model["schedule"]["timesteps"] == len(schedule["alpha_bar"])
    assert abs(schedule["alpha_bar"][-1] - model["schedule"]["alpha_bar_final"]) < 1e-12


@pytest.mark.parametrize(
    "params",
    [
        {"n": 500, "seed": 20240601},
        {"n": 300, "seed": 7, "sampler": "ddim", "steps": 10, "eta": 1.0},
        {"n": 300, "seed": 8, "sampler": "dpmpp2m", "steps": 12},
    ],
)
def test_same_seed_gives_identical_points(live_server: str, params: dict[str, Any]) -> None:
    first = get_json(live_server, "/sample", **params)
    second = httpx.post(f"{live_server}/sample", json=params, timeout=TIMEOUT)
    assert second.status_code == 200
    np.testing.assert_array_equal(points_of(first), points_of(second.json()))
    assert first["model"] == get_json(live_server, "/model")["id"]
    other = get_json(live_server, "/sample", **{**params, "seed": params["seed"] + 1})
    assert not np.allclose(points_of(first), points_of(other))


async def test_a_request_gets_the_same_points_alone_and_in_a_crowd(live_server: str) -> None:
    target = {"n": 400, "seed": 31337, "sampler": "ddpm"}
    crowd = [{"n": 50 + 37 * i, "seed": 500 + i, "sampler": "ddpm"} for i in range(15)]
    async with httpx.AsyncClient(base_url=live_server, timeout=TIMEOUT, limits=httpx.Limits(max_connections=32)) as http:
        alone = await http.post("/sample", json=target)
        assert alone.status_code == 200
        requests = [*crowd[:7], target, *crowd[7:]]
        responses = await asyncio.gather(*(http.post("/sample", json=p) for p in requests))
    for params, response in zip(requests, responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["seed"] == params["seed"] and len(body["points"]) == params["n"]
    in_crowd = responses[7].json()
    np.testing.assert_allclose(points_of(in_crowd), points_of(alone.json()), atol=1e-5, rtol=0)


def _normalisation(model: dict[str, Any]) -> Normalisation:
    data = model["data"]
    return Normalisation(noise=float(data["noise"]), mean=(float(data["mean"][0]), float(data["mean"][1])), scale=float(data["scale"]))


def test_forward_moments_at_T_follow_the_schedule(live_server: str) -> None:
    """x_T ~ q(x_T | x_0): mean √ᾱ_T·E[x_0], covariance ᾱ_T·Cov(x_0) + (1 − ᾱ_T)·I, and, pairing each
    x_T with its own x_0 (the same seed at t = 0), x_T = √ᾱ_T·x_0 + noise of variance 1 − ᾱ_T.

    Each statistic is compared in units of its standard error; the same data must reject
    plausible wrong values of ᾱ, so the tolerances have teeth.
    """
    n, seed = 20_000, 424242
    schedule = get_json(live_server, "/schedule")
    T = schedule["timesteps"]
    alpha_bar = schedule["alpha_bar"][-1]
    norm = _normalisation(get_json(live_server, "/model"))

    noised = get_json(live_server, "/forward", t=T, n=n, seed=seed)
    assert noised["t"] == T and abs(noised["alpha_bar"] - alpha_bar) < 1e-12
    x_t = points_of(noised)
    x_0 = points_of(get_json(live_server, "/forward", t=0, n=n, seed=seed))
    assert x_t.shape == x_0.shape == (n, 2)

    # E[x_0] and Cov(x_0) from a big normalised roll, independent of the server
    roll = norm.normalise(swiss_roll(400_000, norm.noise, seed=7))
    mu0, cov0 = roll.mean(axis=0), np.cov(roll.T)
    fourth0 = ((roll - mu0) ** 4).mean(axis=0)

    mean, cov = x_t.mean(axis=0), np.cov(x_t.T)
    fourth = ((x_t - mean) ** 4).mean(axis=0)
    slope = np.linalg.lstsq(x_0, x_t, rcond=None)[0]  # x_t ≈ x_0 @ slope
    residual = x_t - x_0 @ slope

    def z_scores(a: float) -> dict[str, float]:
        """|observed − predicted| / standard error for each statistic, if ᾱ_T were ``a``."""
        cov_pred = a * cov0 + (1 - a) * np.eye(2)
        var = np.diag(cov_pred)
        fourth_pred = a**2 * fourth0 + 6 * a * (1 - a) * np.diag(cov0) + 3 * (1 - a) ** 2
        scores = {
            "mean": float(np.max(np.abs(mean - math.sqrt(a) * mu0) / np.sqrt(var / n))),
            "var": float(np.max(np.abs(np.diag(cov) - var) / (var * math.sqrt(2 / n)))),
            "cov": float(abs(cov[0, 1] - cov_pred[0, 1]) / math.sqrt((var[0] * var[1] + cov_pred[0, 1] ** 2) / n)),
            "fourth": float(np.max(np.abs(fourth - fourth_pred) / (np.sqrt(8 * fourth_pred**2 / n) + 1e-12))),
            "slope": float(np.max(np.abs(slope - math.sqrt(a) * np.eye(2)) / math.sqrt(max(1 - a, 1e-6) / (n * np.diag(cov0).min())))),
            "noise": float(np.max(np.abs(residual.var(axis=0) - (1 - a)) / (max(1 - a, 1e-6) * math.sqrt(2 / n)))),
        }
        return scores

    observed = z_scores(alpha_bar)
    assert max(observed.values()) < 5.0, observed

    # the same data must reject values of ᾱ far enough from ᾱ_T to be told apart at this n
    # (for this checkpoint's schedule: its neighbours a few steps away, and common mistakes)
    def separation(a: float) -> float:
        """The z-score a perfect estimate would get for the slope and the noise variance."""
        slope = abs(math.sqrt(a) - math.sqrt(alpha_bar)) / math.sqrt(max(1 - a, 1e-6) / (n * np.diag(cov0).min()))
        noise = abs(a - alpha_bar) / (max(1 - a, 1e-6) * math.sqrt(2 / n))
        return max(slope, noise)

    alternatives = {
        "alpha_bar_{T-3}": schedule["alpha_bar"][-4],
        "alpha_bar_{T/2}": schedule["alpha_bar"][T // 2 - 1],
        "sqrt(alpha_bar_T)": math.sqrt(alpha_bar),
        "alpha_bar_T^2": alpha_bar**2,
        "no noise": 1.0,
    }
    testable = {name: a for name, a in alternatives.items() if separation(a) >= 10}
    assert "alpha_bar_{T/2}" in testable or T < 4, alternatives
    for name, wrong in testable.items():
        assert max(z_scores(wrong).values()) > 6.0, (name, z_scores(wrong))
