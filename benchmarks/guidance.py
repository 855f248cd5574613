"""What guidance costs: guided against unguided requests, in-process and over HTTP, side by side.

    python benchmarks/guidance.py                      # n = 10,000, DDPM-50, 5 rounds
    python benchmarks/guidance.py -n 2000 --repeats 9

The same request five ways, in one run, taking turns (A B C D E A B C D E …) so the machine's
noise hits them alike:

- ``default``: the default model ``swiss-roll``, unconditional;
- ``guided model, u omitted``: ``swiss-roll-guided`` through its null condition;
- ``u, w = 0``: the guided model at u = 0.5, conditional only (one evaluation per step);
- ``u, w = 0.25``: guided (two evaluations per step, one batched evaluation per tick);
  its cost is shown against the same request with w = 0;
- ``u per point``, w = 0 and w = 0.25: the same with one u per point (n values).

In-process: the engine (``model.engine.sample``), one torch thread, wall and CPU seconds.
Over HTTP: one server process (``SWIRL_WORKERS=1``, one torch thread) serving ``checkpoints/``;
``GET /sample`` (the per-point row: ``POST /sample`` with an ``.npy`` body of u), wall seconds
per request and the server's CPU seconds per request (utime + stime from /proc, the robust
measure on a shared machine). Targets (issue #25): guided ≤ 2.2× unguided; the guided model's
unconditional requests no dearer than the default model's.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, table  # noqa: E402
from benchmarks.service import Server  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.denoiser import NetDenoiser  # noqa: E402
from model.diffusion import SamplerSpec  # noqa: E402
from model.engine import sample  # noqa: E402

CASES = ("default", "guided model, u omitted", "u, w = 0", "u, w = 0.25", "u per point, w = 0", "u per point, w = 0.25")
UNGUIDED = {CASES[3]: CASES[2], CASES[5]: CASES[4]}  # each guided request against the same request unguided


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rounds(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Each variant once to warm up, then ``repeats`` rounds in turn; per variant [(wall, cpu)]."""
    for fn in variants.values():
        fn()
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            started = time.perf_counter()
            cpu = fn()
            measured[name].append((time.perf_counter() - started, cpu))
    return measured


def in_process(n: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    default = load_checkpoint(ROOT / "checkpoints" / "swiss-roll")
    guided = load_checkpoint(ROOT / "checkpoints" / "swiss-roll-guided")
    nets = {"default": NetDenoiser(default.net, "cpu"), "guided": NetDenoiser(guided.net, "cpu")}
    plans = {"default": default.plan(SamplerSpec("ddpm")), "guided": guided.plan(SamplerSpec("ddpm"))}
    per_point = np.random.default_rng(0).uniform(0, 1, n)

    def run(model: str, u: float | np.ndarray | None, w: float) -> Callable[[], float]:
        def once() -> float:
            started = time.process_time()
            sample(nets[model], plans[model], n, seed=1, u=u, guidance=w)
            return time.process_time() - started

        return once

    variants = {
        CASES[0]: run("default", None, 0.0),
        CASES[1]: run("guided", None, 0.0),
        CASES[2]: run("guided", 0.5, 0.0),
        CASES[3]: run("guided", 0.5, 0.25),
        CASES[4]: run("guided", per_point, 0.0),
        CASES[5]: run("guided", per_point, 0.25),
    }
    return rounds(variants, repeats)


def over_http(n: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    server = Server(str(ROOT / "checkpoints" / "swiss-roll"), SWIRL_MODELS=str(ROOT / "checkpoints"), SWIRL_WORKERS="1", SWIRL_TORCH_THREADS="1")
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).uniform(0, 1, n))
    npy = buffer.getvalue()
    try:
        client = httpx.Client(base_url=server.url, timeout=300.0)
        base = {"n": n, "seed": 1}

        def get(params: dict[str, object]) -> Callable[[], float]:
            def once() -> float:
                before = cpu_seconds(server.process.pid)
                response = client.get("/sample", params={**base, **params}, headers={"accept": "application/x-npy"})
                assert response.status_code == 200, response.text
                return cpu_seconds(server.process.pid) - before

            return once

        def post_npy(guidance: float) -> Callable[[], float]:
            def once() -> float:
                before = cpu_seconds(server.process.pid)
                params = {**base, "model": "swiss-roll-guided", "guidance": guidance}
                headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
                response = client.post("/sample", params=params, content=npy, headers=headers)
                assert response.status_code == 200, response.text
                return cpu_seconds(server.process.pid) - before

            return once

        variants = {
            CASES[0]: get({"model": "swiss-roll"}),
            CASES[1]: get({"model": "swiss-roll-guided"}),
            CASES[2]: get({"model": "swiss-roll-guided", "u": 0.5, "guidance": 0}),
            CASES[3]: get({"model": "swiss-roll-guided", "u": 0.5, "guidance": 0.25}),
            CASES[4]: post_npy(0.0),
            CASES[5]: post_npy(0.25),
        }
        return rounds(variants, repeats)
    finally:
        server.stop()


def medians(measured: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values)) for name, values in measured.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=10_000, help="points per request (default: 10000)")
    p.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    args = p.parse_args()
    torch.set_num_threads(1)
    local = medians(in_process(args.n, args.repeats))
    http = medians(over_http(args.n, args.repeats))
    rows = []
    for case in CASES:
        unguided = UNGUIDED.get(case)
        rows.append(
            [
                case,
                f"{local[case][0] * 1000:.0f}",
                f"{local[case][1] * 1000:.0f}",
                f"{local[case][1] / local[unguided][1]:.2f}" if unguided else "",
                f"{http[case][0] * 1000:.0f}",
                f"{http[case][1] * 1000:.0f}",
                f"{http[case][1] / http[unguided][1]:.2f}" if unguided else "",
            ]
        )
    print(f"# guidance cost: n = {args.n:,}, DDPM-50, median of {args.repeats} rounds; {machine()}\n")
    headers = ["request", "in-process wall ms", "in-process CPU ms", "CPU × unguided", "HTTP wall ms", "server CPU ms", "server CPU × unguided"]
    print(table(headers, rows))
    print(
        f"\nguided model unconditional / default model: in-process CPU {local[CASES[1]][1] / local[CASES[0]][1]:.2f}×, "
        f"server CPU {http[CASES[1]][1] / http[CASES[0]][1]:.2f}×"
    )


if __name__ == "__main__":
    main()
