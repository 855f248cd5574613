"""GET /sample/stream over a real socket: frames arrive while the chain runs, and a client that
disconnects stops its rows (the engine cancels them mid-chain)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(120.0)


def metric(url: str, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in httpx.get(f"{url}/metrics", timeout=TIMEOUT).text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def read_events(response: httpx.Response) -> Any:
    """Yield (event, data, seconds since the request) as each event's data line arrives."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, orjson.loads(line[6:]), time.perf_counter()


def test_frames_arrive_while_the_chain_runs(live_server: str) -> None:
    params = {"n": 60_000, "seed": 3, "trajectory_every": 10}  # DDPM, T steps: x_T, 5 frames, x_0
    arrivals: list[tuple[str, float]] = []
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as client:
        started = time.perf_counter()
        with client.stream("GET", "/sample/stream", params=params) as response:
            assert response.status_code == 200
            for event, data, at in read_events(response):
                arrivals.append((event, at - started))
                if event == "done":
                    done = data
    kinds = [kind for kind, _ in arrivals]
    assert kinds == ["frame"] * done["frames"] + ["done"] and done["frames"] == len(done["trajectory_t"])
    first, last = arrivals[0][1], arrivals[-1][1]
    # the first frame (x_T) leaves long before x_0: 3% of the chain in benchmarks/formats.py; the
    # bound is loose because this shared machine can stall a process for seconds
    assert first < 0.75 * last, (arrivals, done["server_timing"])
    assert arrivals[-2][1] - first > 0.3 * (last - first), arrivals  # and the frames are spread over the chain


def test_a_client_that_disconnects_stops_its_rows(live_server: str) -> None:
    cancelled_before = metric(live_server, "swirl_cancelled_mid_chain_total")
    gone_before = metric(live_server, "swirl_rejected_total", reason="client_gone")
    # a long chain: 100k points × T steps; the client leaves after the first frame
    params = {"n": 100_000, "seed": 5, "trajectory_every": 10}
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as client:
        with client.stream("GET", "/sample/stream", params=params) as response:
            assert response.status_code == 200
            event, data, _ = next(read_events(response))
            assert event == "frame" and data["index"] == 0 and len(data["points"]) == 100_000
        left = time.perf_counter()
    # its rows leave the engine at a tick soon after, long before the chain could have finished
    deadline = left + 30
    while time.perf_counter() < deadline:
        if metric(live_server, "swirl_cancelled_mid_chain_total") > cancelled_before and metric(live_server, "swirl_requests_in_flight") == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the stream's rows were not cancelled within 30 s of the disconnect")
    assert metric(live_server, "swirl_rejected_total", reason="client_gone") > gone_before
    ticks = metric(live_server, "swirl_engine_ticks_total")
    time.sleep(0.5)
    assert metric(live_server, "swirl_engine_ticks_total") == ticks  # nothing left to compute
    # the server is fine afterwards
    assert httpx.get(f"{live_server}/sample", params={"n": 10, "seed": 1}, timeout=TIMEOUT).status_code == 200
