"""Zero-downtime reload with real server processes: SIGHUP to the supervisor and
POST /admin/reload each reach EVERY process, under a steady load of seeded requests that
all succeed and all match the version named in their answer. In the container test the server
is a container of the image, its model repository a bind-mounted folder (tests/servers.py)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from model.checkpoint import load_checkpoint, read_metadata
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample
from tests.model_repo import copy_model, make_variant
from tests.servers import Server, share, start_server, stop_server

pytestmark = pytest.mark.integration

TOKEN = "integration-admin-token"
N, SEEDS = 64, (1, 2, 3, 4)
SPEC = SamplerSpec("ddim", steps=10)
CLOSE = {"Connection": "close"}  # a new connection per request, so that every process gets some


def expected(directory: Path) -> dict[int, np.ndarray]:
    checkpoint = load_checkpoint(directory)
    plan = make_plan(checkpoint.schedule, SPEC)
    denoiser = NetDenoiser(checkpoint.net, "cpu")
    return {seed: sample(denoiser, plan, N, seed).x0.numpy().astype(np.float64) for seed in SEEDS}


@pytest.fixture
def server(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    root = tmp_path / "models"
    root.mkdir()
    copy_model(tiny_checkpoint, root / "alpha")
    make_variant(tiny_checkpoint, root / "beta", seed=1)
    env = {"SWIRL_MODELS": str(root), "SWIRL_DEFAULT_MODEL": "alpha", "SWIRL_WORKERS": "2", "SWIRL_TORCH_THREADS": "1", "SWIRL_ADMIN_TOKEN": TOKEN}
    handle = start_server(tiny_checkpoint, tmp_path / "server.log", ready_timeout=120, **env)
    try:
        yield handle, root
    finally:
        stop_server(handle)


def ids_by_process(url: str, want: int = 2, timeout: float = 60.0) -> dict[int, str]:
    """Ask /models over fresh connections until ``want`` processes answered: pid → alpha's id there."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/models", headers=CLOSE, timeout=30).json()
        seen[body["process"]] = next(m["id"] for m in body["models"] if m["name"] == "alpha")
        if len(seen) >= want:
            return seen
    raise AssertionError(f"only {len(seen)} process(es) answered /models in {timeout} s")


def wait_until_every_process_serves(url: str, model_id: str, pids: set[int], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    latest: dict[int, str] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/models", headers=CLOSE, timeout=30).json()
        latest[body["process"]] = next(m["id"] for m in body["models"] if m["name"] == "alpha")
        if set(latest) >= pids and all(latest[pid] == model_id for pid in pids):
            return
        time.sleep(0.05)
    raise AssertionError(f"not every process serves {model_id[:12]}: {latest}")


def test_sighup_and_admin_reload_reach_every_process_without_dropping_a_request(server: tuple[Server, Path], tiny_checkpoint: Path) -> None:
    handle, root = server
    url = handle.url
    v1 = read_metadata(root / "alpha")["weights_sha256"]
    answers: dict[str, dict[int, np.ndarray]] = {v1: expected(root / "alpha")}

    def publish(seed: int) -> str:
        """A retrained model, published atomically as model.train does; its expected answers."""
        version = make_variant(tiny_checkpoint, root / "alpha", seed=seed)
        share(root / "alpha")  # readable by the server's user, which in a container is not this one
        answers[version] = expected(root / "alpha")
        return version

    pids = set(ids_by_process(url))
    results: list[tuple[int, int, dict[str, Any] | str]] = []
    stop = threading.Event()

    def load(k: int) -> None:
        i = 0
        with httpx.Client(base_url=url, timeout=60, headers=CLOSE) as client:
            while not stop.is_set():
                seed = SEEDS[(k + i) % len(SEEDS)]
                params = {"n": N, "seed": seed, "sampler": "ddim", "steps": 10, "model": "alpha"}
                try:
                    response = client.get("/sample", params=params)
                    results.append((seed, response.status_code, response.json() if response.status_code == 200 else response.text))
                except httpx.HTTPError as exc:
                    results.append((seed, 0, repr(exc)))
                i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        # 1. a retrained model is published (atomically, as model.train does), then SIGHUP to the supervisor
        v2 = publish(seed=20)
        handle.send_signal(signal.SIGHUP)
        wait_until_every_process_serves(url, v2, pids)
        time.sleep(0.5)
        # 2. the next one, through the admin route: it reloads the answering process and signals the others
        v3 = publish(seed=30)
        response = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["models"]["alpha"]["result"] == "loaded" and report["models"]["alpha"]["id"] == v3
        assert report["other_processes_signalled"] is True and report["process"] in pids
        wait_until_every_process_serves(url, v3, pids)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    failures = [(seed, status, body) for seed, status, body in results if status != 200]
    assert not failures, failures[:5]
    seen = set()
    for seed, _, body in results:
        assert isinstance(body, dict)
        seen.add(body["model"])
        np.testing.assert_allclose(body["points"], answers[body["model"]][seed], atol=1e-5)
    assert seen == {v1, v2, v3}, [s[:12] for s in seen]
    # no process was restarted: the same pids answer, and the supervisor logged no restart
    assert set(ids_by_process(url)) == pids
    log = handle.log()
    assert "Child process" not in log and "Terminated child process" not in log, log[-3000:]
    assert log.count("Asked server process") >= 2 * len(pids)
