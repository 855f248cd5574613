"""The plain server against Ray Serve with 1 and 2 replicas, side by side on this machine.

    python benchmarks/ray_serve.py [--duration 20] [--rounds 2] [--checkpoint checkpoints/swiss-roll]

The mixed closed-loop workload of benchmarks/engine.py (48 clients, n = 100, a third each
ddpm, ddim 10 steps, dpmpp2m 10 steps, raw asyncio sockets) against, in turn, round after
round (A B C D A B C D …):

- plain, 1 process:  ``python -m app`` with SWIRL_WORKERS=1 (its torch uses both cores);
- Ray, 1 replica:    deploy/ray/serve.yaml on a local one-node Ray, one replica of 2 CPUs;
- plain, 2 processes: SWIRL_WORKERS=2 (one torch thread each);
- Ray, 2 replicas:   two replicas of 1 CPU each.

Each Ray row has the compute of the plain row above it, so their ratio is what Ray's HTTP
proxy and routing cost here (on 2 cores the proxy competes with the replicas for CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import free_port, machine, table
from benchmarks.engine import ROOT, closed_loop, start, stop

N = 100


def ray_config(checkpoint: Path, port: int, replicas: int, cpus: float) -> dict[str, Any]:
    from app.ray_serve import DEFAULT_CONFIG, read_config

    config = copy.deepcopy(read_config(DEFAULT_CONFIG))
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"]["settings"] = {**app["args"]["settings"], "checkpoint": str(checkpoint), "device": "cpu"}
    app["args"]["num_cpus"] = cpus
    (deployment,) = app["deployments"]
    deployment.pop("autoscaling_config")
    deployment["num_replicas"] = replicas
    return config


def ready(port: int) -> bool:
    """/readyz = 200 through the proxy (which Serve may still be (re)starting on a busy machine)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


class RayTarget:
    """Swirl on the benchmark's local Ray, redeployed with the given replicas."""

    def __init__(self, label: str, checkpoint: Path, replicas: int, cpus: float) -> None:
        self.label, self.checkpoint, self.replicas, self.cpus = label, checkpoint, replicas, cpus
        self.port = free_port()

    def __enter__(self) -> RayTarget:
        from app.ray_serve import deploy

        deploy(ray_config(self.checkpoint, self.port, self.replicas, self.cpus))
        deadline = time.monotonic() + 120
        while not ready(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: the proxy does not answer /readyz")
            time.sleep(0.2)
        time.sleep(2.0)  # every replica ready, not just the first to answer
        return self

    def __exit__(self, *exc: object) -> None:
        from ray import serve

        serve.shutdown()  # the proxy too: the next deployment gets a fresh port


class PlainTarget:
    def __init__(self, label: str, checkpoint: Path, workers: int) -> None:
        self.label, self.env = label, {"SWIRL_CHECKPOINT": str(checkpoint), "SWIRL_WORKERS": str(workers)}

    def __enter__(self) -> PlainTarget:
        self.server = start(self.label, ROOT, self.env)
        self.port = self.server.port
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "swiss-roll")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per target and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=48)
    args = p.parse_args()
    checkpoint = args.checkpoint.resolve()

    import ray

    from app.ray_serve import start_local_ray

    start_local_ray(num_cpus=2)
    targets = [
        lambda: PlainTarget("plain, 1 process", checkpoint, 1),
        lambda: RayTarget("Ray Serve, 1 replica (2 CPUs)", checkpoint, 1, 2.0),
        lambda: PlainTarget("plain, 2 processes", checkpoint, 2),
        lambda: RayTarget("Ray Serve, 2 replicas (1 CPU each)", checkpoint, 2, 1.0),
    ]
    labels = ["plain, 1 process", "Ray Serve, 1 replica (2 CPUs)", "plain, 2 processes", "Ray Serve, 2 replicas (1 CPU each)"]
    runs: dict[str, list[tuple[float, float, float, int]]] = {label: [] for label in labels}
    try:
        for _ in range(args.rounds):
            for make in targets:
                with make() as target:
                    asyncio.run(closed_loop(target.port, args.clients, 3.0, N))  # warm-up
                    runs[target.label].append(asyncio.run(closed_loop(target.port, args.clients, args.duration, N)))
                    print(f"{target.label}: {runs[target.label][-1]}", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()

    rows = []
    for i, label in enumerate(labels):
        r = runs[label]
        rps = statistics.median(x[0] for x in r) / N
        p99 = statistics.median(x[2] for x in r)
        base = labels[i - 1] if label.startswith("Ray") else label
        base_rps = statistics.median(x[0] for x in runs[base]) / N
        rows.append([label, f"{rps:.1f}", f"{statistics.median(x[1] for x in r):.0f}", f"{p99:.0f}", f"{rps / base_rps:.2f}", sum(x[3] for x in r)])
    print(f"machine: {machine()}\n")
    print(f"mixed closed loop: {args.clients} clients, n = {N}, ddpm / ddim-10 / dpmpp2m-10, {args.duration:g} s × {args.rounds} rounds (medians):\n")
    print(table(["server", "requests/s", "p50 ms", "p99 ms", "vs the plain row of equal compute", "non-200"], rows))


if __name__ == "__main__":
    main()
