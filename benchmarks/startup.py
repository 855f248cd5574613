"""Start-up: `python -m app` from process start to ``/readyz`` = 200, and what it spends on.

    python benchmarks/startup.py               # the three set-ups below, 5 runs each, interleaved
    python benchmarks/startup.py --repeats 3

Set-ups, each a fresh ``python -m app`` on CPU with no other SWIRL_* setting:

* ``defaults``: what ``make serve`` runs: every model under checkpoints/ (six shipped), one
  server process per core;
* ``defaults, SWIRL_WORKERS=1``: the same models in one process;
* ``one model``: ``SWIRL_CHECKPOINT=checkpoints/swiss-roll`` alone, one process per core.

For each: wall time from ``Popen`` to the first ``/readyz`` = 200 (a multi-process server
answers once any process is ready), the CPU seconds of every server process by then
(utime + stime from /proc, children included: robust where other jobs share the cores),
and, from ``GET /models``, each model's load (read, verify, build) and warm-up seconds as
the answering process measured them. A last row times ``import app.main`` alone (torch,
FastAPI and the app's modules), the floor under every set-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import free_port, machine, table, wait_ready  # noqa: E402

SETUPS: dict[str, dict[str, str]] = {
    "defaults (make serve)": {},
    "defaults, SWIRL_WORKERS=1": {"SWIRL_WORKERS": "1"},
    "one model (SWIRL_CHECKPOINT)": {"SWIRL_CHECKPOINT": "checkpoints/swiss-roll"},
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant, plus what its waited-for children spent."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # after the name: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based)
        total += sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += tree_cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def server_processes(pid: int) -> int:
    """1 for a single-process server; else the supervisor's spawned server processes."""
    spawned = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                spawned += 1
        except FileNotFoundError:
            pass
    return spawned or 1


def environment(extra: dict[str, str], port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWIRL_")}
    env.update(SWIRL_PORT=str(port), SWIRL_DEVICE="cpu", SWIRL_LOG_LEVEL="warning", **extra)
    return env


def one_start(extra: dict[str, str], timeout: float) -> tuple[float, float, list[dict[str, float]], int]:
    """(seconds to ready, server CPU seconds by then, per-model load and warm-up, processes)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "server.log"
        with open(log_path, "wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment(extra, port), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(process, url, timeout, log_path, poll_s=0.02)
            ready = time.perf_counter() - started
            cpu = tree_cpu_seconds(process.pid)
            processes = server_processes(process.pid)
            models = [{"load": m["load_seconds"], "warm": m["warm_seconds"]} for m in httpx.get(f"{url}/models", timeout=30).json()["models"]]
        finally:
            process.terminate()
            process.wait(60)
    return ready, cpu, models, processes


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app.main"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="starts per set-up (interleaved: A B C A B C …)")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds a start may take before it counts as failed")
    args = p.parse_args()
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}\n")
    results: dict[str, list[tuple[float, float, list[dict[str, float]], int]]] = {name: [] for name in SETUPS}
    for _ in range(args.repeats):
        for name, extra in SETUPS.items():
            results[name].append(one_start(extra, args.timeout))
    rows: list[list[object]] = []
    for name, runs in results.items():
        ready = [r[0] for r in runs]
        cpu = [r[1] for r in runs]
        load = [sum(m["load"] for m in r[2]) for r in runs]
        warm = [sum(m["warm"] for m in r[2]) for r in runs]
        rows.append(
            [
                name,
                len(runs[0][2]),
                runs[0][3],
                f"{statistics.median(ready):.2f} ({min(ready):.2f}–{max(ready):.2f})",
                f"{statistics.median(cpu):.2f}",
                f"{statistics.median(load):.2f}",
                f"{statistics.median(warm):.2f}",
            ]
        )
    imports = [import_seconds() for _ in range(args.repeats)]
    rows.append(["`import app.main` alone", "", 1, f"{statistics.median(imports):.2f} ({min(imports):.2f}–{max(imports):.2f})", "", "", ""])
    headers = ["set-up", "models", "processes", "start → /readyz 200 s, median (min–max)", "server CPU s", "load s, all models", "warm-up s, all models"]
    print(table(headers, rows))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
