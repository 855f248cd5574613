"""Bounded HTTP load against a Swirl server, checking every answer.

    python benchmarks/load.py --url http://127.0.0.1:8000 --clients 8 --duration 10 --n 500
    python benchmarks/load.py --checkpoint checkpoints/swiss-roll --clients 8 --duration 5

Before the load, one reference answer per (sampler, seed) is fetched with nothing else in
flight. During the load, ``--clients`` concurrent clients send only those seeded requests
(GET and POST alternately) until ``--duration`` seconds or ``--max-requests`` requests have
passed, and every 200 is compared with its reference (the server batches concurrent
requests, so this checks that batching never changes a request's points). Reports
throughput, latency percentiles and status counts as a markdown table (and ``--json``).

Exit status: 0 when every answer was a 200 with the reference points; 1 on any
mismatch, any 5xx (a 503 included: size --clients to the server's SWIRL_MAX_QUEUE), any
4xx or any transport error; 2 when the server could not be reached or started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import free_port, wait_ready  # noqa: E402

ATOL = 1e-5  # batched matmuls may differ from solo ones in the last float32 bits


@dataclass
class Kind:
    """One seeded request the load may send, with its reference answer."""

    params: dict[str, Any]
    reference: np.ndarray | None = None


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    points: int = 0
    mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def parse_samplers(text: str) -> list[dict[str, Any]]:
    """'ddpm,ddim:10,dpmpp2m:10' → [{'sampler': 'ddpm'}, {'sampler': 'ddim', 'steps': 10}, ...]."""
    specs = []
    for item in text.split(","):
        name, _, steps = item.strip().partition(":")
        spec: dict[str, Any] = {"sampler": name}
        if steps:
            spec["steps"] = int(steps)
        specs.append(spec)
    return specs


def start_server(checkpoint: Path, device: str, ready_timeout: float, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SWIRL_CHECKPOINT": str(checkpoint), "SWIRL_HOST": "127.0.0.1", "SWIRL_PORT": str(port), "SWIRL_DEVICE": device}
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, url, ready_timeout, log_path)
    return process, url


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def batch_stats(url: str) -> tuple[float, float]:
    """(requests, chains) so far from /metrics' swirl_batch_requests histogram; (0, 0) if absent."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0.0, 0.0
    values = {}
    for line in text.splitlines():
        if line.startswith(("swirl_batch_requests_sum ", "swirl_batch_requests_count ")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("swirl_batch_requests_sum", 0.0), values.get("swirl_batch_requests_count", 0.0)


def as_points(body: dict[str, Any]) -> np.ndarray:
    return np.asarray(body["points"], dtype=np.float64)


async def fetch_references(http: httpx.AsyncClient, kinds: list[Kind]) -> None:
    """One request at a time, so each reference is the answer given alone."""
    for kind in kinds:
        response = await http.get("/sample", params=kind.params)
        if response.status_code != 200:
            raise RuntimeError(f"reference request {kind.params} answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        kind.reference = as_points(body)
        if kind.reference.shape != (kind.params["n"], 2) or not np.isfinite(kind.reference).all():
            raise RuntimeError(f"reference request {kind.params} returned a malformed answer")


async def client(index: int, http: httpx.AsyncClient, kinds: list[Kind], deadline: float, budget: list[int], tally: Tally) -> None:
    rng = random.Random(index)
    use_post = index % 2 == 1
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choice(kinds)
        use_post = not use_post
        started = time.perf_counter()
        try:
            if use_post:
                response = await http.post("/sample", json=kind.params)
            else:
                response = await http.get("/sample", params=kind.params)
        except httpx.HTTPError as exc:
            tally.errors.append(f"{kind.params}: {type(exc).__name__}: {exc}")
            tally.statuses["error"] += 1
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[str(response.status_code)] += 1
        if response.status_code != 200:
            continue
        body = response.json()
        points = as_points(body)
        assert kind.reference is not None
        if body.get("seed") != kind.params["seed"] or points.shape != kind.reference.shape:
            tally.mismatches.append(f"{kind.params}: wrong seed or shape {points.shape}")
        elif not np.allclose(points, kind.reference, atol=ATOL, rtol=0):
            worst = float(np.abs(points - kind.reference).max())
            tally.mismatches.append(f"{kind.params}: points differ from the reference by up to {worst:.3g}")
        else:
            tally.points += len(points)


async def run(url: str, args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """The whole measurement; ``transport`` lets tests substitute a fake server."""
    specs = parse_samplers(args.samplers)
    kinds = [Kind({"n": args.n, "seed": 1000 + s, **spec}) for spec in specs for s in range(args.seeds)]
    limits = httpx.Limits(max_connections=args.clients + 2, max_keepalive_connections=args.clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits, transport=transport) as http:
        await fetch_references(http, kinds)
        batched_before = batch_stats(url) if transport is None else (0.0, 0.0)
        tally = Tally()
        started = time.monotonic()
        deadline = started + args.duration
        budget = [args.max_requests]
        clients = [client(i, http, kinds, deadline, budget, tally) for i in range(args.clients)]
        # every request has its own timeout; this bounds the whole run even so
        await asyncio.wait_for(asyncio.gather(*clients), timeout=args.duration + args.timeout + 30)
        elapsed = time.monotonic() - started
        batched_after = batch_stats(url) if transport is None else (0.0, 0.0)
    requests_batched = batched_after[0] - batched_before[0]
    chains = batched_after[1] - batched_before[1]
    latencies = np.asarray(tally.latencies) * 1000.0
    server_errors = sum(count for status, count in tally.statuses.items() if status.startswith("5"))
    client_errors = sum(count for status, count in tally.statuses.items() if status.startswith("4"))
    return {
        "url": url,
        "clients": args.clients,
        "duration_s": round(elapsed, 3),
        "n": args.n,
        "samplers": args.samplers,
        "distinct_requests": len(kinds),
        "requests": tally.requests,
        "ok": tally.statuses.get("200", 0),
        "statuses": dict(sorted(tally.statuses.items())),
        "requests_per_s": round(tally.requests / elapsed, 2) if elapsed > 0 else 0.0,
        "points_per_s": round(tally.points / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
            "p90": round(float(np.percentile(latencies, 90)), 2) if len(latencies) else None,
            "p99": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
            "max": round(float(latencies.max()), 2) if len(latencies) else None,
        },
        "requests_per_chain": round(requests_batched / chains, 2) if chains else None,
        "mismatches": len(tally.mismatches),
        "server_errors": server_errors,
        "client_errors": client_errors,
        "transport_errors": len(tally.errors),
        "examples": (tally.mismatches + tally.errors)[:10],
    }


def markdown(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    rows = [
        ("server", report["url"]),
        ("clients × duration", f"{report['clients']} × {report['duration_s']:.1f} s"),
        ("points per request", f"{report['n']} ({report['samplers']}, {report['distinct_requests']} seeded requests)"),
        ("requests (200)", f"{report['requests']} ({report['ok']})"),
        ("throughput", f"{report['requests_per_s']:.1f} req/s, {report['points_per_s']:,.0f} points/s"),
        ("latency p50 / p90 / p99 / max", " / ".join("–" if latency[k] is None else f"{latency[k]:.1f} ms" for k in ("p50", "p90", "p99", "max"))),
        ("requests per chain (server)", "–" if report["requests_per_chain"] is None else f"{report['requests_per_chain']:.2f}"),
        ("statuses", ", ".join(f"{status}: {count}" for status, count in report["statuses"].items()) or "–"),
        ("mismatches / 5xx / 4xx / transport errors", " / ".join(str(report[k]) for k in ("mismatches", "server_errors", "client_errors", "transport_errors"))),
    ]
    lines = ["| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/load.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--url", help="base URL of a running server (default http://127.0.0.1:8000)")
    target.add_argument("--checkpoint", type=Path, help="start `python -m app` on this checkpoint (loopback, a free port) and stop it afterwards")
    p.add_argument("--device", default="cpu", help="SWIRL_DEVICE for a server started with --checkpoint (default cpu)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    p.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests in all (default 100000)")
    p.add_argument("--n", type=int, default=500, help="points per request (default 500)")
    p.add_argument("--samplers", default="ddpm,ddim:10,dpmpp2m:10", help="sampler[:steps] list (default ddpm,ddim:10,dpmpp2m:10)")
    p.add_argument("--seeds", type=int, default=4, help="seeds per sampler (default 4)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for a started server (default 120)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = p.parse_args(argv)
    for name in ("clients", "n", "seeds", "max_requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.duration <= 3600:
        p.error("--duration must be in (0, 3600] seconds")
    return args


def failed(report: dict[str, Any]) -> bool:
    keys = ("mismatches", "server_errors", "client_errors", "transport_errors")
    return any(report[key] for key in keys) or not report["ok"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    process = None
    log_path = Path(tempfile.gettempdir()) / f"swirl-load-server-{os.getpid()}.log"
    try:
        if args.checkpoint is not None:
            process, url = start_server(args.checkpoint, args.device, args.ready_timeout, log_path)
        else:
            url = (args.url or "http://127.0.0.1:8000").rstrip("/")
        report = asyncio.run(run(url, args))
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        print(f"load: cannot run: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("load: the run did not finish within its time bound", file=sys.stderr)
        return 1
    finally:
        if process is not None:
            stop_server(process)
    if process is not None and not failed(report):
        log_path.unlink(missing_ok=True)  # kept (and named in errors) only when something went wrong
    print(markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for example in report["examples"]:
        print(f"  {example}", file=sys.stderr)
    if failed(report):
        print("load: FAILED (see the table)" + (f"; server log: {log_path}" if process is not None else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
