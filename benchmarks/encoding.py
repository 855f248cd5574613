"""JSON encoding of a /sample response: Swirl's orjson-from-numpy against the usual ways.

python benchmarks/encoding.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.wire.encoding import dumps, points
from app.wire.schemas import SampleResponse
from benchmarks._common import interleaved_medians, machine, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    print(f"machine: {machine()}\n")
    rows = []
    for n in args.sizes:
        xy = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
        meta = {"n": n, "seed": 1, "sampler": "ddpm", "steps": 50, "eta": 0.0, "model": "0" * 64}
        variants = {
            "orjson from numpy (Swirl)": lambda xy=xy, meta=meta: dumps({**meta, "points": points(xy)}),
            "json.dumps of tolist()": lambda xy=xy, meta=meta: json.dumps({**meta, "points": xy.tolist()}).encode(),
            "pydantic model → JSON": lambda xy=xy, meta=meta: SampleResponse(**meta, points=xy.tolist()).model_dump_json().encode(),
        }
        medians = interleaved_medians(variants, args.repeats)
        base = medians["orjson from numpy (Swirl)"]
        rows += [[n, name, f"{seconds * 1e3:.1f}", f"{seconds / base:.1f}×"] for name, seconds in medians.items()]
    print(table(["n", "encoder", "ms", "relative to Swirl"], rows))


if __name__ == "__main__":
    main()
