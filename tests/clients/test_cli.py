"""``swirl-client``, the installed console script, against a real server: files in each format
equal /sample's points, stdout, the stream's progress bar, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.clients.conftest import hold_the_queue, models_digest
from tests.conftest import Server, free_port

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "swirl-client"


def run(*args: str, url: str | None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWIRL_URL"}
    if url is not None:
        env["SWIRL_URL"] = url
    return subprocess.run([str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def expected(url: str, **params: Any) -> np.ndarray:
    return np.asarray(httpx.get(f"{url}/sample", params=params, timeout=120).json()["points"], dtype=np.float32)


def test_sample_writes_npy_csv_and_json_by_extension(live_server: str, tmp_path: Path) -> None:
    points = expected(live_server, n=1000, seed=7, sampler="ddim", steps=10)
    for name in ("points.npy", "points.csv", "points.json"):
        done = run("sample", "-n", "1000", "--seed", "7", "--sampler", "ddim", "--steps", "10", "-o", name, url=live_server, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"→ {name}" in done.stderr and "seed 7, ddim, 10 steps" in done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "points.npy"), points)
    assert (tmp_path / "points.csv").read_text().splitlines()[0] == "x,y"
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "points.csv", delimiter=",", skiprows=1, dtype=np.float32), points)
    body = json.loads((tmp_path / "points.json").read_text())
    assert body["seed"] == 7 and body["sampler"] == "ddim"
    np.testing.assert_array_equal(np.asarray(body["points"], dtype=np.float32), points)


def test_stdout_url_option_and_forward(live_server: str, tmp_path: Path) -> None:
    done = run("--url", live_server, "sample", "-n", "50", "--seed", "3", "-o", "-", url="http://127.0.0.1:9")  # --url wins over SWIRL_URL
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "x,y" and len(lines) == 51 and done.stderr == ""
    np.testing.assert_array_equal(np.loadtxt(lines[1:], delimiter=",", dtype=np.float32), expected(live_server, n=50, seed=3))
    as_json = run("forward", "-t", "25", "-n", "40", "--seed", "2", "--format", "json", url=live_server)
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    reference = httpx.get(f"{live_server}/forward", params={"t": 25, "n": 40, "seed": 2}).json()
    assert body["t"] == 25 and body["alpha_bar"] == pytest.approx(reference["alpha_bar"], rel=1e-12)
    np.testing.assert_array_equal(np.asarray(body["points"], dtype=np.float32), np.asarray(reference["points"], dtype=np.float32))


def test_a_streamed_chain_draws_a_progress_bar_and_writes_x0(live_server: str, tmp_path: Path) -> None:
    done = run("sample", "-n", "300", "--seed", "1", "--sampler", "ddim", "--steps", "8", "--stream", "-o", "chain.npy", url=live_server, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    updates = [line for line in done.stderr.splitlines() if line.startswith("sampling [")]  # \r-separated, read as lines
    assert len(updates) == 9 and updates[-1].startswith("sampling [##############################] 100%"), done.stderr
    assert updates[0].startswith("sampling [..............................]   0%")
    np.testing.assert_array_equal(np.load(tmp_path / "chain.npy"), expected(live_server, n=300, seed=1, sampler="ddim", steps=8))


def test_models_and_health_print_json(live_server: str) -> None:
    models = run("models", url=live_server)
    assert models.returncode == 0
    assert models_digest(json.loads(models.stdout)) == models_digest(httpx.get(f"{live_server}/models").json())
    health = run("health", url=live_server)
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "ready"


def test_exit_codes_bad_input_is_2_unavailable_is_3(live_server: str, tmp_path: Path) -> None:
    bad = run("sample", "-n", "0", url=live_server)
    assert bad.returncode == 2 and "n:" in bad.stderr and bad.stdout == ""
    assert run("sample", "-n", "10", "--model", "nope", url=live_server).returncode == 2
    assert run("sample", "-n", "10", "-o", "points.txt", url=live_server, cwd=tmp_path).returncode == 2  # unknown extension
    assert run("sample", "--sampler", "euler", url=live_server).returncode == 2  # refused by the parser
    nobody = run("health", url=f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 3 and "cannot reach" in nobody.stderr


def test_overloaded_without_retries_exits_3(tiny_queue_server: Server) -> None:
    hold_the_queue(tiny_queue_server.url)
    done = run("--retries", "0", "sample", "-n", "10", url=tiny_queue_server.url)
    assert done.returncode == 3 and "503" in done.stderr and "SWIRL_MAX_QUEUE" in done.stderr
