"""A first end-to-end check of the app in-process; the full contract lives beside it."""

from __future__ import annotations

import httpx


async def test_sample_returns_n_points_with_the_seed_and_model_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/sample", params={"n": 10, "seed": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["n"] == 10 and body["seed"] == 3 and len(body["points"]) == 10
    model = (await client.get("/model")).json()
    assert body["model"] == model["id"]
