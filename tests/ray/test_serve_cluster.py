"""Swirl on Ray Serve, on a real two-node Ray cluster on this machine.

One cluster for the module (a head node and a worker node, one CPU each), Swirl deployed
from deploy/ray/serve.yaml with two replicas, one per node, behind one HTTP proxy:

- the replicas run on different nodes, each with its own engine;
- the HTTP contract of the plain server holds through Serve (endpoints, 422s naming the
  field, metrics, readiness after the checkpoint is loaded);
- a seeded request gets the same points whichever replica answers, and the plain
  in-process app gives the same points;
- under a steady seeded load, one replica's process is killed (SIGKILL): every answer is
  the right points or a clean retryable error, nothing hangs, Serve starts a replacement
  replica and the load goes on through it.

Skipped when the optional extra is missing (``pip install -r requirements/ray.txt``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the optional extra swirl[ray] is not installed (pip install -r requirements/ray.txt)")

from model.checkpoint import load_checkpoint
from tests.ray.cluster import SwirlCluster, swirl_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

TIMEOUT = httpx.Timeout(30.0)
KINDS = [
    {"sampler": "ddpm", "n": 200, "seed": 11},
    {"sampler": "ddim", "steps": 10, "n": 200, "seed": 12},
    {"sampler": "dpmpp2m", "steps": 10, "n": 200, "seed": 13},
    {"sampler": "ddpm", "n": 50, "seed": 14},
]
ATOL = 1e-5  # batched matmuls may differ from solo ones in the last float32 bits


@pytest.fixture(scope="module")
def swirl(tiny_checkpoint: Path) -> Iterator[SwirlCluster]:
    with swirl_cluster(tiny_checkpoint) as running:
        yield running


def points_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["points"], dtype=np.float64)


def replica_of(response: httpx.Response) -> str:
    replica = response.headers.get("x-swirl-replica")
    assert replica, f"no x-swirl-replica header: {dict(response.headers)}"
    return replica


# -- placement ---------------------------------------------------------------------------


def test_two_replicas_run_on_different_nodes(swirl: SwirlCluster) -> None:
    assert swirl.running_replicas() == 2
    replicas = swirl.replicas()
    assert len(replicas) == 2, replicas
    assert {info["node_id"] for info in replicas.values()} == {swirl.head_node_id, swirl.worker_node_id}
    assert len({info["pid"] for info in replicas.values()}) == 2


# -- the HTTP contract through Serve ------------------------------------------------------


def test_health_readiness_and_model_through_serve(swirl: SwirlCluster, tiny_checkpoint: Path) -> None:
    sha256 = load_checkpoint(tiny_checkpoint, "cpu").sha256
    with httpx.Client(base_url=swirl.url, timeout=TIMEOUT) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"] == sha256
        model = http.get("/model").json()
        assert model["id"] == sha256 and model["device"] == "cpu"
        schedule = http.get("/schedule").json()
        assert schedule["timesteps"] == model["schedule"]["timesteps"]


def test_sampling_and_errors_through_serve(swirl: SwirlCluster) -> None:
    with httpx.Client(base_url=swirl.url, timeout=TIMEOUT) as http:
        got = http.get("/sample", params={"n": 300, "seed": 5, "sampler": "ddim", "steps": 10})
        body = got.json()
        assert got.status_code == 200 and body["seed"] == 5 and np.asarray(body["points"]).shape == (300, 2)
        posted = http.post("/sample", json={"n": 300, "seed": 5, "sampler": "ddim", "steps": 10})
        np.testing.assert_allclose(points_of(posted), points_of(got), atol=ATOL, rtol=0)
        forward = http.get("/forward", params={"t": 10, "n": 100, "seed": 1})
        assert forward.status_code == 200 and np.asarray(forward.json()["points"]).shape == (100, 2)
        for params, name in (({"n": 0}, "n"), ({"n": 20_001}, "n"), ({"n": 5, "sampler": "euler"}, "sampler"), ({"n": 5, "seed": -1}, "seed")):
            bad = http.get("/sample", params=params)
            assert bad.status_code == 422, (params, bad.text)
            assert name in bad.json()["error"], (params, bad.text)
        bad_body = http.post("/sample", content=b'{"n": "many"}', headers={"content-type": "application/json"})
        assert bad_body.status_code == 422 and "n" in bad_body.json()["error"]
        # past POST /sample's limit (16 KiB plus 32 bytes of u per point for max_points = 20,000: 656 KB)
        too_big = http.post("/sample", content=b" " * 1_000_000, headers={"content-type": "application/json"})
        assert too_big.status_code == 413
        assert http.get("/no-such-page").status_code == 404


def test_metrics_are_the_apps_own(swirl: SwirlCluster) -> None:
    with httpx.Client(base_url=swirl.url, timeout=TIMEOUT) as http:
        for seed in range(4):
            assert http.get("/sample", params={"n": 10, "seed": seed}).status_code == 200
        text = http.get("/metrics").text
    assert "swirl_requests_total" in text and "swirl_ready 1.0" in text
    assert 'swirl_requests_total{endpoint="/sample",method="GET",status="200"}' in text


# -- reproducibility across replicas --------------------------------------------------------


@pytest.mark.parametrize("params", KINDS[:3], ids=lambda p: str(p["sampler"]))
def test_the_same_seed_gives_the_same_points_on_every_replica(swirl: SwirlCluster, params: dict[str, Any], tiny_checkpoint: Path) -> None:
    answers: dict[str, list[np.ndarray]] = {}
    with httpx.Client(base_url=swirl.url, timeout=TIMEOUT) as http:
        for _ in range(60):  # Serve picks a replica at random (power of two choices)
            response = http.get("/sample", params=params)
            answers.setdefault(replica_of(response), []).append(points_of(response))
            if len(answers) == 2 and min(len(a) for a in answers.values()) >= 2:
                break
    assert len(answers) == 2, f"only replica(s) {list(answers)} answered"
    first = next(iter(answers.values()))[0]
    for replica, points in answers.items():
        for p in points:
            np.testing.assert_array_equal(p, first, err_msg=f"replica {replica} answered other points for the same seed")
    other_seed = points_of(httpx.get(f"{swirl.url}/sample", params={**params, "seed": params["seed"] + 1000}, timeout=TIMEOUT))
    assert np.abs(other_seed - first).max() > 0.1  # the seed matters: the check above could fail


async def test_ray_replicas_answer_what_the_plain_server_answers(swirl: SwirlCluster, client: httpx.AsyncClient) -> None:
    """The in-process app (``client``: create_app without Ray) against the replicas."""
    for params in KINDS:
        plain = points_of(await client.get("/sample", params=params))
        on_ray = points_of(httpx.get(f"{swirl.url}/sample", params=params, timeout=TIMEOUT))
        np.testing.assert_allclose(on_ray, plain, atol=ATOL, rtol=0, err_msg=str(params))


# -- a replica killed under load ------------------------------------------------------------


@dataclass
class Outcome:
    at: float
    status: int | str  # HTTP status, or the transport error's name
    replica: str | None
    params: dict[str, Any]
    detail: str = ""
    retry_after: str | None = None


@dataclass
class Load:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def retryable(outcome: Outcome) -> bool:
    """A clean, retryable refusal: 503 with Retry-After and a JSON error (app.ray_serve.ReplicaLostAs503)."""
    return outcome.status == 503 and outcome.retry_after is not None and "error" in json.loads(outcome.detail)


async def steady_client(index: int, http: httpx.AsyncClient, references: list[np.ndarray], load: Load) -> None:
    rng = random.Random(index)
    while not load.stop.is_set():
        k = rng.randrange(len(KINDS))
        params = KINDS[k]
        started = time.monotonic()
        try:
            if index % 2:
                response = await http.post("/sample", json=params)
            else:
                response = await http.get("/sample", params=params)
        except httpx.HTTPError as exc:  # a hang shows up here as a timeout
            load.outcomes.append(Outcome(started, type(exc).__name__, None, params, str(exc)))
            continue
        outcome = Outcome(
            started,
            response.status_code,
            response.headers.get("x-swirl-replica"),
            params,
            response.text[:500] if response.status_code != 200 else "",
            response.headers.get("retry-after"),
        )
        load.outcomes.append(outcome)
        if response.status_code == 200:
            points = np.asarray(response.json()["points"], dtype=np.float64)
            if points.shape != references[k].shape or not np.allclose(points, references[k], atol=ATOL, rtol=0):
                load.mismatches.append(f"{params} from replica {outcome.replica}")
        else:
            await asyncio.sleep(0.2)  # a client backing off before its retry


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        await asyncio.sleep(0.25)


async def test_a_killed_replica_is_replaced_while_the_load_goes_on(swirl: SwirlCluster) -> None:
    async with httpx.AsyncClient(base_url=swirl.url, timeout=TIMEOUT) as http:
        references = [points_of(await http.get("/sample", params=params)) for params in KINDS]
        before = swirl.replicas()
        (victim_id,) = [replica for replica, info in before.items() if info["node_id"] == swirl.worker_node_id]
        victim_pid = before[victim_id]["pid"]
        load = Load()
        clients = [asyncio.create_task(steady_client(i, http, references, load)) for i in range(6)]
        try:
            await wait_until(lambda: {o.replica for o in load.outcomes if o.status == 200} >= set(before), 60, "both replicas answered under load")
            killed_at = time.monotonic()
            os.kill(victim_pid, signal.SIGKILL)

            def replaced() -> bool:
                now = swirl.replicas()
                return len(now) == 2 and victim_id not in now and swirl.running_replicas() == 2

            await wait_until(replaced, 180, "Serve runs a replacement replica")
            replacement = (set(swirl.replicas()) - set(before)).pop()
            await wait_until(lambda: sum(o.replica == replacement and o.status == 200 for o in load.outcomes) >= 5, 60, "the replacement answers")
        finally:
            load.stop.set()
            done, pending = await asyncio.wait(clients, timeout=60)
        assert not pending, "a client never came back: a request hung"
        for task in done:
            task.result()

    outcomes = load.outcomes
    statuses = Counter(o.status for o in outcomes)
    assert not load.mismatches, f"wrong points: {load.mismatches[:5]}"
    transport = [o for o in outcomes if isinstance(o.status, str)]
    assert not transport, f"transport errors or timeouts (a hang): {[(o.status, o.detail) for o in transport[:5]]}"
    unclean = [o for o in outcomes if o.status != 200 and not retryable(o)]
    assert not unclean, f"errors that are not a clean retryable refusal: {[(o.status, o.detail) for o in unclean[:5]]}"
    after_kill = [o for o in outcomes if o.at > killed_at]
    assert sum(o.status == 200 for o in after_kill) >= 10, statuses
    # the survivor kept answering while the victim was being replaced
    survivor = next(replica for replica in before if replica != victim_id)
    assert any(o.replica == survivor and o.status == 200 for o in after_kill)
    # the replacement is a new process, on a node of the cluster, with the victim gone
    now = swirl.replicas()
    assert now[replacement]["pid"] != victim_pid
    assert {info["node_id"] for info in now.values()} == {swirl.head_node_id, swirl.worker_node_id}
    print(f"\nload through the kill: {dict(statuses)}; replacement {replacement} after {victim_id}")


async def test_a_request_ended_without_a_response_is_a_503_with_retry_after() -> None:
    """The proxy middleware alone: what Serve's proxy does when a replica dies, and what the app does."""
    from app.ray_serve import ReplicaLostAs503

    async def proxy_losing_the_replica(scope: Any, receive: Any, send: Any) -> None:
        return None  # Serve's proxy after an ActorDiedError: no response started

    async def proxy_raising(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("replica unreachable")

    async def app_500(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error":"non-finite"}'})

    for inner in (proxy_losing_the_replica, proxy_raising):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ReplicaLostAs503(inner)), base_url="http://proxy") as http:
            lost = await http.get("/sample")
        assert lost.status_code == 503 and lost.headers["retry-after"] == "1" and "again" in lost.json()["error"]
        assert int(lost.headers["content-length"]) == len(lost.content)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ReplicaLostAs503(app_500)), base_url="http://proxy") as http:
        from_app = await http.get("/sample")
    assert from_app.status_code == 500 and from_app.json() == {"error": "non-finite"}
