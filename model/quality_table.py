"""Quality against network evaluations (1 … 50) for several checkpoints, as a Markdown table.

    python -m model.quality_table checkpoints/swiss-roll checkpoints/swiss-roll-v \\
        checkpoints/swiss-roll-v-student-1 checkpoints/swiss-roll-v-student-2 checkpoints/swiss-roll-v-student-4 \\
        [--results benchmarks/RESULTS.md] [--jobs 4]

Each cell is the evaluator's two-sample accuracy (``model.evaluate``: seeded classifier,
mean of three 10,000-point draws; 0.5 is indistinguishable from the swiss roll). Rows are
(model, sampler); a distilled student contributes its own step counts to one ``student`` row.
With ``--results`` the table replaces the block between the markers in that file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from model.checkpoint import Checkpoint, load_checkpoint
from model.diffusion import SamplerSpec

log = logging.getLogger("swirl.quality_table")

EVALUATIONS = (1, 2, 4, 8, 10, 20, 50)
START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"


def row_specs(checkpoint: Checkpoint) -> list[tuple[str, SamplerSpec]]:
    """(row name, spec) for every cell this model fills."""
    T = checkpoint.schedule.timesteps
    if checkpoint.student_grids:
        return [("student (distilled)", SamplerSpec("student", steps=k)) for k in sorted(checkpoint.student_grids)]
    spacing = "quadratic" if checkpoint.schedule.zero_terminal_snr else None
    cells = [("ddpm", SamplerSpec("ddpm"))]
    for steps in EVALUATIONS:
        if steps <= T:
            cells.append(("ddim (η = 0)", SamplerSpec("ddim", steps=steps)))
            cells.append((f"dpmpp2m ({spacing or 'logsnr'} spacing)", SamplerSpec("dpmpp2m", steps=steps, spacing=spacing)))
    return cells


def model_name(checkpoint: Checkpoint) -> str:
    section = checkpoint.student
    if section:
        return f"{section.get('teacher', {}).get('name', '?')} students"
    return checkpoint.path.name


def _cell(path: str, spec: SamplerSpec, n: int) -> dict[str, Any]:
    """One cell, in a worker process with one torch thread."""
    import numpy as np
    import torch

    from model.data import swiss_roll
    from model.evaluate import REFERENCE_SEED, EvalConfig, Reference, evaluate_samplers

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(path, "cpu")
    norm = checkpoint.normalisation
    reference = Reference(norm.normalise(swiss_roll(n, norm.noise, seed=REFERENCE_SEED)), float(np.nan), float(np.nan), ())
    (row,) = evaluate_samplers(checkpoint, (spec,), reference, EvalConfig(n=n, n_w2=min(n, 2_000)), w2=False).values()
    return row


def measure(paths: list[str], n: int, jobs: int) -> list[dict[str, Any]]:
    """Every cell of every checkpoint, ``jobs`` at a time."""
    tasks: list[tuple[str, str, str, SamplerSpec]] = []
    for path in paths:
        checkpoint = load_checkpoint(path, "cpu")
        tasks.extend((model_name(checkpoint), row, path, spec) for row, spec in row_specs(checkpoint))
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [(name, row, path, pool.submit(_cell, path, spec, n)) for name, row, path, spec in tasks]
        for name, row, path, future in futures:
            cell = {"model": name, "row": row, "checkpoint": path, **future.result()}
            log.info("%s / %s / %d: %.4f", name, row, cell["network_evaluations"], cell["two_sample_accuracy"])
            results.append(cell)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    rows: dict[tuple[str, str], dict[int, float]] = {}
    for cell in results:
        rows.setdefault((cell["model"], cell["row"]), {})[cell["network_evaluations"]] = cell["two_sample_accuracy"]
    header = "| model | sampler | " + " | ".join(str(e) for e in EVALUATIONS) + " |"
    lines = [header, "|" + " --- |" * (len(EVALUATIONS) + 2)]
    for (model, row), cells in rows.items():
        values = [f"{cells[e]:.3f}" if e in cells else "" for e in EVALUATIONS]
        lines.append(f"| {model} | {row} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_results(path: Path, table: str, note: str) -> None:
    text = path.read_text()
    block = f"{START}\n{note}\n\n{table}\n{END}"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m model.quality_table", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("-n", "--samples", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="processes, one thread each")
    p.add_argument("--results", type=Path, help="Markdown file whose quality-table block is replaced")
    p.add_argument("--json", type=Path, help="also write every cell as JSON")
    args = p.parse_args(argv)
    results = measure(args.checkpoints, args.samples, args.jobs)
    table = markdown(results)
    print(table)  # noqa: T201 - the CLI's result
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.results:
        write_results(args.results, table, f"Two-sample accuracy (mean of 3 draws of {args.samples} points; 0.5 = indistinguishable) by network evaluations.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
