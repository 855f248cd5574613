"""The serving engine against the previous worker, side by side on this machine.

    python benchmarks/engine.py [--previous 54b5401] [--duration 20] [--rounds 2]

The previous version (default: the last commit before the engine, whose worker coalesced
requests with equal sampler settings and ran each batch's chain to the end) is checked out
with ``git archive`` into a temporary directory and served from there with the same
virtual environment; nothing of it lives in the product. Every scenario runs each server in
turn, round after round (A B C A B C …), so machine noise hits them alike. Load comes from
raw asyncio sockets (``benchmarks/_common.raw_get``), which cost the client almost nothing.

1. Mixed closed loop: 48 clients, n = 100, a third each ddpm, ddim 10 steps, dpmpp2m 10
   steps: throughput and p99 for the previous server, the engine in one process
   (SWIRL_WORKERS=1) and the engine with its default processes.
2. Head-of-line blocking: 10-point requests, each sent as the previous one answers, all through
   a 100,000-point DDPM request's life (every one's latency: median and max; the big request's
   time against its time alone).
3. 64 concurrent clients × n = 100 against one 6,400-point request (median of interleaved pairs).
4. DDPM-50 in-process at n = 1k, 10k, 100k, one and two torch threads: the previous ``run_chain``
   against ``model.engine.sample``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import closed_loop_latencies, free_port, machine, raw_get, table, wait_ready

ROOT = Path(__file__).resolve().parents[1]
MIXED = ["sampler=ddpm", "sampler=ddim&steps=10", "sampler=dpmpp2m&steps=10"]


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    port: int


def export_previous(commit: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="swirl-previous-"))
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def start(label: str, cwd: Path, env: dict[str, str], ready_timeout: float = 300.0) -> Server:
    port = free_port()
    # one model, as the previous server serves (python -m app alone would serve every shipped model)
    environment = {**os.environ, "SWIRL_HOST": "127.0.0.1", "SWIRL_PORT": str(port), "SWIRL_DEVICE": "cpu", "SWIRL_LOG_LEVEL": "warning"}
    environment.update({"SWIRL_CHECKPOINT": "checkpoints/swiss-roll", **env})
    environment["PYTHONPATH"] = os.pathsep.join([str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])])
    log = open(Path(tempfile.gettempdir()) / f"swirl-bench-{label.replace(' ', '_')}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", ready_timeout, Path(log.name))
    finally:
        log.close()  # the child holds its own copy
    time.sleep(2.0)  # every process of a multi-process server becomes ready in turn
    return Server(label, process, port)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(60)
    except subprocess.TimeoutExpired:
        server.process.kill()


async def closed_loop(port: int, clients: int, duration: float, n: int) -> tuple[float, float, float, int]:
    """(points/s, p50 ms, p99 ms, non-200 answers) for ``clients`` closed-loop clients."""
    target = lambda rng: f"/sample?n={n}&seed={rng.randrange(1 << 30)}&{rng.choice(MIXED)}"  # noqa: E731
    latencies, errors, elapsed = await closed_loop_latencies(port, clients, duration, target)
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3  # noqa: E731
    return (len(latencies) - errors) * n / elapsed, p(0.5), p(0.99), errors


async def head_of_line(port: int, small_n: int = 10) -> tuple[list[float], float, float]:
    """A ``small_n``-point DDPM request sent as soon as the previous one answers, all through a
    100,000-point DDPM request's life, its start and its end included: (every small request's s,
    big request s with them, big request s alone)."""
    big = "/sample?n=100000&seed=1"
    started = time.perf_counter()
    await raw_get("127.0.0.1", port, big)
    alone = time.perf_counter() - started
    smalls: list[float] = []
    running = True

    async def run_big() -> float:
        nonlocal running
        t0 = time.perf_counter()
        status, _ = await raw_get("127.0.0.1", port, big)
        running = False
        assert status == 200, status
        return time.perf_counter() - t0

    async def stream() -> None:
        seed = 2
        while running:
            t0 = time.perf_counter()
            status, _ = await raw_get("127.0.0.1", port, f"/sample?n={small_n}&seed={seed}")
            assert status == 200, status
            if running:  # answered while the big request still ran
                smalls.append(time.perf_counter() - t0)
            seed += 1

    big_time, _ = await asyncio.gather(run_big(), stream())
    return smalls, big_time, alone


HEAD_OF_LINE_HEADERS = ["server", "small requests", "small median ms", "small max ms", "big request s", "big alone s", "big slowdown"]


def head_of_line_row(label: str, runs: list[tuple[list[float], float, float]]) -> list[str]:
    """A table row for ``head_of_line`` runs: every small request of every run, the big one's medians."""
    smalls = [s for run in runs for s in run[0]]
    big, alone = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    median = f"{statistics.median(smalls) * 1e3:.0f}" if smalls else "-"
    largest = f"{max(smalls) * 1e3:.0f}" if smalls else "-"
    return [label, str(len(smalls)), median, largest, f"{big:.2f}", f"{alone:.2f}", f"{big / alone:.2f}×"]


async def crowd_vs_one(port: int, clients: int = 64, n: int = 100) -> float:
    async def crowd() -> float:
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(raw_get("127.0.0.1", port, f"/sample?n={n}&seed={i}") for i in range(clients)))
        assert all(status == 200 for status, _ in answers)
        return time.perf_counter() - t0

    async def one() -> float:
        t0 = time.perf_counter()
        status, _ = await raw_get("127.0.0.1", port, f"/sample?n={clients * n}&seed=0")
        assert status == 200
        return time.perf_counter() - t0

    ratios = []
    for _ in range(7):
        a, b = await crowd(), await one()
        ratios.append(a / b)
    return statistics.median(ratios)


OLD_CHAIN = """
import sys, time, torch
from model.checkpoint import load_checkpoint
from model.diffusion import GeneratorNoise, SamplerSpec, make_plan, net_eps_fn, run_chain
ck = load_checkpoint("checkpoints/swiss-roll", "cpu")
eps, plan = net_eps_fn(ck.net, ck.schedule.timesteps, "cpu"), make_plan(ck.schedule, SamplerSpec("ddpm"))
run = lambda n: run_chain(eps, plan, GeneratorNoise.single(torch.Generator().manual_seed(0), n), n)
"""
NEW_CHAIN = """
import sys, time, torch
from model.checkpoint import load_checkpoint
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample
ck = load_checkpoint("checkpoints/swiss-roll", "cpu")
denoiser, plan = NetDenoiser(ck.net, "cpu"), make_plan(ck.schedule, SamplerSpec("ddpm"))
run = lambda n: sample(denoiser, plan, n, 0)
"""
TIMING = """
torch.set_num_threads(int(sys.argv[3]))
n = int(sys.argv[1]); run(n)
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); run(n); times.append(time.perf_counter() - t0)
print(min(times), sorted(times)[len(times) // 2])
"""


def in_process(previous: Path, sizes: tuple[int, ...] = (1000, 10_000, 100_000), rounds: int = 5, threads: tuple[int, ...] = (1, 2)) -> list[list[str]]:
    """DDPM-50 in-process, the previous ``run_chain`` against ``model.engine.sample``, in alternating
    subprocesses (old, new, old, new …), each timing a few chains after a warm-up: per version the
    median over rounds of each process's fastest chain and of its median chain."""
    rows = []
    for count in threads:
        for n in sizes:
            repeats = "5" if n < 100_000 else "3"
            old: list[tuple[float, float]] = []
            new: list[tuple[float, float]] = []
            for _ in range(rounds):
                for code, cwd, into in ((OLD_CHAIN, previous, old), (NEW_CHAIN, ROOT, new)):
                    env = {**os.environ, "PYTHONPATH": str(cwd)}
                    argv = [sys.executable, "-c", code + TIMING, str(n), repeats, str(count)]
                    out = subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True)
                    fastest, median = out.stdout.strip().splitlines()[-1].split()
                    into.append((float(fastest), float(median)))
            o_min, w_min = statistics.median(x[0] for x in old), statistics.median(x[0] for x in new)
            o_med, w_med = statistics.median(x[1] for x in old), statistics.median(x[1] for x in new)
            fastest = [f"{o_min * 1e3:.1f}", f"{w_min * 1e3:.1f}", f"{o_min / w_min:.2f}×"]
            rows.append([str(count), f"{n:,}", *fastest, f"{o_med * 1e3:.1f}", f"{w_med * 1e3:.1f}", f"{o_med / w_med:.2f}×"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--previous", default="54b5401", help="commit of the previous server (default: the last before the engine)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of mixed load per server and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=48)
    p.add_argument("--inproc-rounds", type=int, default=7, help="rounds of the in-process comparison")
    p.add_argument("--only", choices=["mixed", "hol", "crowd", "inproc"], action="append", help="run only these scenarios")
    args = p.parse_args()
    scenarios = set(args.only or ["mixed", "hol", "crowd", "inproc"])
    previous = export_previous(args.previous)
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}\n")
    configs = [
        (f"previous ({args.previous}), default", previous, {}),
        ("engine, SWIRL_WORKERS=1", ROOT, {"SWIRL_WORKERS": "1"}),
        ("engine, default (one process per core)", ROOT, {}),
    ]
    mixed: dict[str, list[tuple[float, float, float, int]]] = {label: [] for label, _, _ in configs}
    hol: dict[str, list[tuple[list[float], float, float]]] = {label: [] for label, _, _ in configs}
    crowd: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    for _ in range(args.rounds):
        for label, cwd, env in configs:
            server = start(label, cwd, env)
            try:
                if "mixed" in scenarios:
                    asyncio.run(closed_loop(server.port, args.clients, 3.0, 100))  # warm-up
                    mixed[label].append(asyncio.run(closed_loop(server.port, args.clients, args.duration, 100)))
                if "hol" in scenarios:
                    hol[label].append(asyncio.run(head_of_line(server.port)))
                if "crowd" in scenarios:
                    crowd[label].append(asyncio.run(crowd_vs_one(server.port)))
            finally:
                stop(server)
    base = configs[0][0]
    if "mixed" in scenarios:
        rows = []
        for label, runs in mixed.items():
            tput = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            base_tput = statistics.median(r[0] for r in mixed[base])
            base_p99 = statistics.median(r[2] for r in mixed[base])
            per_round = ", ".join(f"{r[0]:,.0f}" for r in runs)
            rows.append(
                [
                    label,
                    f"{tput:,.0f}",
                    per_round,
                    f"{statistics.median(r[1] for r in runs):.0f}",
                    f"{p99:.0f}",
                    f"{tput / base_tput:.2f}×",
                    f"{p99 / base_p99:.2f}×",
                    sum(r[3] for r in runs),
                ]
            )
        print(f"mixed closed loop: {args.clients} clients, n = 100, ddpm / ddim-10 / dpmpp2m-10, {args.duration:g} s × {args.rounds} rounds (medians):\n")
        print(table(["server", "points/s", "per round", "p50 ms", "p99 ms", "throughput vs previous", "p99 vs previous", "non-200"], rows))
    if "hol" in scenarios:
        hol_rows = [head_of_line_row(label, runs) for label, runs in hol.items()]
        print("\n10-point requests, each sent as the previous one answers, while a 100,000-point DDPM request runs (all rounds):\n")
        print(table(HEAD_OF_LINE_HEADERS, hol_rows))
    if "crowd" in scenarios:
        rows = [[label, f"{statistics.median(v):.2f}"] for label, v in crowd.items()]
        print("\n64 concurrent clients × n = 100 against one 6,400-point request (median ratio of 7 interleaved pairs per round):\n")
        print(table(["server", "time ratio"], rows))
    if "inproc" in scenarios:
        rounds = args.inproc_rounds
        print(f"\nDDPM-50 in-process, previous run_chain against the engine's sample() ({rounds} rounds of alternating subprocesses, medians):\n")
        headers = ["threads", "n", "previous fastest ms", "engine fastest ms", "engine speed", "previous median ms", "engine median ms", "speed (median)"]
        print(table(headers, in_process(previous, rounds=args.inproc_rounds)))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
