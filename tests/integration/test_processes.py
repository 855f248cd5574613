"""SWIRL_WORKERS: several server processes on one port, each with its own engine.

Every process answers a seeded request with the same points; /metrics sums all processes
whichever one answers; SIGTERM drains every process and the server exits 0.
"""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, launch, start_server, stop_server

pytestmark = pytest.mark.integration
TIMEOUT = httpx.Timeout(60.0)


def samples(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()) if k != "pid")
            values[key] = values.get(key, 0.0) + sample.value
    return values


def test_two_processes_answer_alike_share_metrics_and_drain_on_sigterm(tiny_checkpoint: Path, tmp_path: Path) -> None:
    server = start_server(tiny_checkpoint, tmp_path / "server.log", SWIRL_WORKERS="2", SWIRL_MAX_POINTS="200000")
    try:
        for _ in range(600):  # both processes loaded and warmed
            if samples(server.url).get("swirl_ready", 0) == 2:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert samples(server.url).get("swirl_ready") == 2
        params = {"n": 64, "seed": 99, "sampler": "dpmpp2m", "steps": 8}
        # fresh connections land on either process; every answer is the same
        answers = [httpx.get(f"{server.url}/sample", params=params, timeout=TIMEOUT).json() for _ in range(12)]
        first = np.asarray(answers[0]["points"])
        for body in answers[1:]:
            np.testing.assert_allclose(np.asarray(body["points"]), first, atol=1e-5, rtol=0)
        counted = samples(server.url)
        assert counted.get("swirl_requests_total|endpoint=/sample|method=GET|status=200") == 12
        assert counted.get("swirl_points_generated_total|endpoint=sample") == 12 * 64
        # SIGTERM with requests in flight on both processes: all finish, then the server exits 0
        with ThreadPoolExecutor(max_workers=6) as pool:
            in_flight = [pool.submit(httpx.get, f"{server.url}/sample", params={"n": 100_000, "seed": s}, timeout=TIMEOUT) for s in range(6)]
            for _ in range(200):
                if samples(server.url).get("swirl_requests_in_flight", 0) == 6:
                    break
                subprocess.run(["sleep", "0.05"], check=True)
            server.send_signal(signal.SIGTERM)
            statuses = [f.result().status_code for f in in_flight]
        assert statuses == [200] * 6, statuses
        assert server.wait(timeout=90) == 0
        log = server.log()
        assert log.count("finishing admitted requests") == 2 and log.count("worker stopped") == 2, log[-3000:]
        assert "Traceback" not in log
    finally:
        stop_server(server)


def test_a_broken_checkpoint_stops_every_process_and_the_server_exits_non_zero(tmp_path: Path) -> None:
    env = {"SWIRL_CHECKPOINT": str(tmp_path / "missing"), "SWIRL_DEVICE": "cpu", "SWIRL_WORKERS": "2", "SWIRL_PORT": str(free_port())}
    app = launch(env)
    output = app.communicate(timeout=180)
    assert app.wait() == 3, (app.wait(), output[-2000:])
    assert "cannot start" in output and "checkpoint directory not found" in output, output[-2000:]
    assert "ready in" not in output
