"""Training speed against torch's CPU thread count: what `python -m model.train --threads` defaults to.

    python benchmarks/train_threads.py --steps 200 --repeats 3 --threads 1 2

Each run is a fresh process (`python -m model.train --steps N --threads K`, the default
recipe) timed from its own training summary, so OpenMP's thread pool starts cold every
time; the thread counts take turns (1 2 1 2 …) so the machine's noise hits them alike.
The table also shows whether the weights, hence the model id, came out the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, table


def run_once(steps: int, threads: int, out: Path) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads) if threads else ""}
    if not threads:
        env.pop("OMP_NUM_THREADS")
    command = [sys.executable, "-m", "model.train", "--out", str(out), "--overwrite", "--steps", str(steps), "--threads", str(threads), "--device", "cpu"]
    subprocess.run([*command, "--no-progress"], check=True, capture_output=True, env=env)
    meta = json.loads((out / "checkpoint.json").read_text())
    return float(meta["training"]["wall_time_s"]), meta["weights_sha256"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="training steps per run (default: 200)")
    p.add_argument("--repeats", type=int, default=3, help="runs per thread count (default: 3)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare; 0 = torch's default (default: 1 2)")
    args = p.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start\n")
    times: dict[int, list[float]] = {k: [] for k in args.threads}
    ids: dict[int, set[str]] = {k: set() for k in args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for threads in args.threads:
                seconds, model_id = run_once(args.steps, threads, Path(tmp) / f"t{threads}")
                print(f"  threads {threads}: {seconds:.2f} s", flush=True)
                times[threads].append(seconds)
                ids[threads].add(model_id)
    fastest = min(statistics.median(v) for v in times.values())
    rows = [
        [
            k or "torch default",
            statistics.median(v),
            min(v),
            max(v),
            f"{statistics.median(v) / fastest:.2f}×",
            ", ".join(sorted(i[:12] for i in ids[k])),
        ]
        for k, v in times.items()
    ]
    print(table(["threads", f"median s ({args.steps} steps)", "min s", "max s", "vs fastest", "model id"], rows))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
