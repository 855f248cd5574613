"""The request path: what a request costs the server beside what its model costs, previous commit against this one.

    python benchmarks/request_path.py [--previous 8833e25] [--duration 6] [--rounds 1] [--also loop:SWIRL_ENGINE_ON=loop]

The previous commit is checked out with ``git worktree add`` into a temporary directory
(removed afterwards) and both servers run side by side, default settings (``python -m app``,
SWIRL_WORKERS processes), with ``SWIRL_MODELS`` pointing at this checkout's ``checkpoints/``
so the 1-evaluation student is served. For every scenario the servers take turns (A B, round
after round) under the same closed loop: ``--clients`` raw-socket clients
(``benchmarks/_common.raw_get``: one fresh connection per request, tens of microseconds of
client CPU) for ``--duration`` seconds after a one-second warm-up. ``--also`` adds servers of this
checkout with other settings (say, the engine on the event loop) to the same turns.

Reported per server and scenario: requests/s, p50 and p99 latency, and server CPU per request:
user + system time of the supervisor and every server process (``/proc/<pid>/stat``) over the
window, divided by the answers. On a shared machine the throughput of two identical servers
scatters by ±25 %; CPU per request by a few per cent, so it is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import closed_loop_latencies, machine, table
from benchmarks.engine import Server, start, stop

ROOT = Path(__file__).resolve().parents[1]
STUDENT = "model=swiss-roll-v-student-1&sampler=student&steps=1"
SCENARIOS: dict[str, Callable[[random.Random], str]] = {
    "healthz": lambda rng: "/healthz",
    "student n=1": lambda rng: f"/sample?n=1&seed={rng.randrange(1 << 30)}&{STUDENT}",
    "student n=100": lambda rng: f"/sample?n=100&seed={rng.randrange(1 << 30)}&{STUDENT}",
    "student n=10000": lambda rng: f"/sample?n=10000&seed={rng.randrange(1 << 30)}&{STUDENT}",
    "ddpm-50 n=100": lambda rng: f"/sample?n=100&seed={rng.randrange(1 << 30)}&model=swiss-roll&sampler=ddpm",
}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    requests: int
    errors: int
    seconds: float
    cpu_seconds: float
    latencies: list[float] = field(repr=False)

    @property
    def per_s(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests - self.errors) * 1e3


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (their threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


async def closed_loop(port: int, clients: int, duration: float, target: Callable[[random.Random], str], pids: list[int] | None) -> Window:
    """``closed_loop_latencies`` with the server's CPU time (``pids``) over the window."""
    cpu_before = cpu_seconds(pids) if pids else 0.0
    latencies, errors, elapsed = await closed_loop_latencies(port, clients, duration, target)
    cpu = cpu_seconds(pids) - cpu_before if pids else 0.0
    return Window(len(latencies), errors, elapsed, cpu, latencies)


def checkout(commit: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="swirl-previous-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(directory), commit], cwd=ROOT, check=True, capture_output=True)
    return directory


def remove_checkout(directory: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(directory)], cwd=ROOT, check=False, capture_output=True)
    shutil.rmtree(directory.parent, ignore_errors=True)


def measure(servers: list[Server], scenarios: list[str], args: argparse.Namespace) -> dict[tuple[str, str], list[Window]]:
    windows: dict[tuple[str, str], list[Window]] = {}
    trees = {server.label: process_tree(server.process.pid) for server in servers}
    for name in scenarios:
        for _ in range(args.rounds):
            for server in servers:
                asyncio.run(closed_loop(server.port, args.clients, 1.0, SCENARIOS[name], None))  # warm-up
                window = asyncio.run(closed_loop(server.port, args.clients, args.duration, SCENARIOS[name], trees[server.label]))
                windows.setdefault((name, server.label), []).append(window)
                print(
                    f"  {name:16} {server.label:10} {window.per_s:8,.0f} req/s  p99 {window.percentile(0.99):6.0f} ms  "
                    f"{window.cpu_ms_per_request:.3f} ms CPU/request  ({window.errors} non-200)",
                    flush=True,
                )
    return windows


def report(windows: dict[tuple[str, str], list[Window]], labels: list[str], scenarios: list[str]) -> None:
    def med(name: str, label: str, value: Callable[[Window], float]) -> float:
        return statistics.median(value(w) for w in windows[(name, label)])

    rows = []
    for name in scenarios:
        for label in labels:
            rate = med(name, label, lambda w: w.per_s)
            row = [
                name,
                label,
                f"{rate:,.0f}",
                f"{med(name, label, lambda w: w.percentile(0.5)):.1f}",
                f"{med(name, label, lambda w: w.percentile(0.99)):.1f}",
                f"{med(name, label, lambda w: w.cpu_ms_per_request):.3f}",
                sum(w.errors for w in windows[(name, label)]),
            ]
            if label != labels[0]:
                rate_ratio = rate / med(name, labels[0], lambda w: w.per_s)
                cpu_ratio = med(name, label, lambda w: w.cpu_ms_per_request) / med(name, labels[0], lambda w: w.cpu_ms_per_request)
                p99_ratio = med(name, label, lambda w: w.percentile(0.99)) / med(name, labels[0], lambda w: w.percentile(0.99))
                row.append(f"{rate_ratio:.2f}× req/s, {p99_ratio:.2f}× p99, {cpu_ratio:.2f}× CPU")
            else:
                row.append("")
            rows.append(row)
    print()
    print(table(["request", "server", "requests/s", "p50 ms", "p99 ms", "server CPU ms/request", "non-200", "vs previous"], rows))
    if "healthz" in scenarios and "student n=1" in scenarios:
        print()
        ratios = [[label, f"{med('student n=1', label, lambda w: w.per_s) / med('healthz', label, lambda w: w.per_s):.2f}×"] for label in labels]
        print(table(["server", "student n=1 requests/s ÷ /healthz requests/s"], ratios))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--previous", default="8833e25", help="commit of the previous server (default 8833e25)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds of load per server, scenario and round (default 6)")
    p.add_argument("--rounds", type=int, default=1, help="rounds per scenario, the servers alternating (default 1)")
    p.add_argument("--clients", type=int, default=48, help="closed-loop clients (default 48)")
    p.add_argument("--only", choices=list(SCENARIOS), action="append", help="run only these scenarios")
    p.add_argument("--this-only", action="store_true", help="serve this checkout only (no previous commit)")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE[,NAME=VALUE]",
        help="another server of this checkout with these environment variables, e.g. loop:SWIRL_ENGINE_ON=loop",
    )
    args = p.parse_args()
    scenarios = args.only or list(SCENARIOS)
    env = {"SWIRL_MODELS": str(ROOT / "checkpoints")}
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{args.clients} clients, {args.duration:g} s per window, {args.rounds} round(s); server CPU = utime + stime of every server process\n", flush=True)
    previous = None if args.this_only else checkout(args.previous)
    servers: list[Server] = []
    try:
        if previous is not None:
            servers.append(start("previous", previous, env))
        servers.append(start("this", ROOT, env))
        for also in args.also:
            label, _, assignments = also.partition(":")
            extra = dict(item.split("=", 1) for item in assignments.split(",") if item)
            servers.append(start(label, ROOT, {**env, **extra}))
        windows = measure(servers, scenarios, args)
    finally:
        for server in servers:
            stop(server)
        if previous is not None:
            remove_checkout(previous)
    labels = [server.label for server in servers]
    report(windows, labels, scenarios)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"\nprevious = {args.previous}, this = {head} (+ uncommitted changes, if any)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
