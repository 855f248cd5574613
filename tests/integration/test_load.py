"""benchmarks/load.py: a short run against a real server exits 0; its checks catch bad answers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

LOAD = ROOT / "benchmarks" / "load.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("swirl_load", LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_short_load_run_against_a_real_server_passes(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """8 clients for 5 s; against SWIRL_BASE_URL when set, else a server it starts on the tiny checkpoint."""
    external = os.environ.get("SWIRL_BASE_URL")
    target = ["--url", external] if external else ["--checkpoint", str(request.getfixturevalue("tiny_checkpoint"))]
    report_path = tmp_path / "load.json"
    command = [sys.executable, str(LOAD), *target, "--clients", "8", "--duration", "5", "--n", "100", "--seeds", "3", "--json", str(report_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| throughput |" in result.stdout and "p50" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["ok"] == report["requests"] > 8
    assert report["statuses"] == {"200": report["ok"]}
    assert report["mismatches"] == report["server_errors"] == report["transport_errors"] == 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p90"] <= report["latency_ms"]["p99"]
    assert report["requests_per_s"] > 0 and report["points_per_s"] > 0


def test_an_unreachable_server_exits_non_zero() -> None:
    result = subprocess.run(
        [sys.executable, str(LOAD), "--url", f"http://127.0.0.1:{free_port()}", "--duration", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "cannot run" in result.stderr


def fake_server(corrupt_every: int, status: int = 200) -> httpx.MockTransport:
    """Answers /sample with points that depend on the seed; every k-th answer under load is wrong."""
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        params: dict[str, Any] = dict(request.url.params)
        if request.method == "POST":
            params = json.loads(request.content)
        seed, n = int(params["seed"]), int(params["n"])
        points = np.random.default_rng(seed).standard_normal((n, 2))
        calls["n"] += 1
        if calls["n"] > 3 and calls["n"] % corrupt_every == 0:  # after the 3 references
            if status != 200:
                return httpx.Response(status, json={"error": "boom"})
            points = points + 1e-3
        return httpx.Response(200, json={"n": n, "seed": seed, "points": points.tolist()})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("status", "key"), [(200, "mismatches"), (500, "server_errors"), (503, "server_errors")])
def test_wrong_points_and_5xx_fail_the_run(status: int, key: str) -> None:
    load = load_module()
    args = load.parse_args(["--url", "http://fake", "--clients", "2", "--duration", "0.5", "--n", "4", "--samplers", "ddpm", "--seeds", "3"])
    report = asyncio.run(load.run("http://fake", args, transport=fake_server(corrupt_every=5, status=status)))
    assert report["requests"] > 5 and report[key] > 0
    assert load.failed(report)
    clean = asyncio.run(load.run("http://fake", args, transport=fake_server(corrupt_every=10**9)))
    assert clean["mismatches"] == clean["server_errors"] == 0 and not load.failed(clean)
