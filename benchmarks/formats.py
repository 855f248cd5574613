"""Wire formats end to end against a real server: JSON, JSON+gzip, npy and v2 binary.

    python benchmarks/formats.py [--repeats 7] [--checkpoint checkpoints/swiss-roll]

For /forward (sampling costs little, so the format dominates) and /sample at n = 10k and 100k,
and a 51-frame DDPM trajectory at n = 10k: response bytes on the wire and end-to-end time as a
client sees it (request, server work and encoding, transfer, and decoding to a float32 numpy
array), medians of interleaved runs over one httpx client on loopback. "transport" is end to end
minus the server's own compute (its Server-Timing header): what the format costs. "at 100 Mbit/s"
adds the bytes' time on such a link, for the gzip decision (loopback transfers are nearly free).
The SSE table measures when the first frame of a streamed DDPM chain reaches the client.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, table  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

NPY = "application/x-npy"
LINK_BITS_PER_S = 100e6
Fetch = Callable[[httpx.Client], tuple[np.ndarray, int, float]]  # → (array, bytes on the wire, server compute s)


def compute_seconds(response: httpx.Response) -> float:
    for part in response.headers.get("server-timing", "").split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name == "compute":
            return next(float(p[4:]) for p in params if p.startswith("dur=")) / 1000
    return 0.0


def json_fetch(path: str, params: dict[str, Any], key: str, gzip: bool) -> Fetch:
    def fetch(client: httpx.Client) -> tuple[np.ndarray, int, float]:
        response = client.get(path, params=params, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
        response.raise_for_status()
        assert ("content-encoding" in response.headers) is gzip
        body = response.json()
        if key == "trajectory":
            array = np.asarray([frame["points"] for frame in body["trajectory"]], dtype=np.float32)
        else:
            array = np.asarray(body["points"], dtype=np.float32)
        return array, response.num_bytes_downloaded, compute_seconds(response)

    return fetch


def npy_fetch(path: str, params: dict[str, Any]) -> Fetch:
    def fetch(client: httpx.Client) -> tuple[np.ndarray, int, float]:
        response = client.get(path, params=params, headers={"Accept": NPY, "Accept-Encoding": "identity"})
        response.raise_for_status()
        return np.load(io.BytesIO(response.content)), response.num_bytes_downloaded, compute_seconds(response)

    return fetch


def v2_fetch(params: dict[str, Any], output: str) -> Fetch:
    types = {"n": "INT64", "seed": "INT64", "steps": "INT64", "trajectory_every": "INT64", "sampler": "BYTES"}
    request = orjson.dumps(
        {
            "inputs": [{"name": k, "datatype": types[k], "shape": [1], "data": [v]} for k, v in params.items()],
            "outputs": [{"name": output, "parameters": {"binary_data": True}}],
        }
    )

    def fetch(client: httpx.Client) -> tuple[np.ndarray, int, float]:
        response = client.post("/v2/models/swirl/infer", content=request, headers={"Accept-Encoding": "identity"})
        response.raise_for_status()
        length = int(response.headers["inference-header-content-length"])
        header = orjson.loads(response.content[:length])
        (tensor,) = header["outputs"]
        array = np.frombuffer(response.content, dtype="<f4", offset=length).reshape(tensor["shape"])
        return array, response.num_bytes_downloaded, compute_seconds(response)

    return fetch


def measure(client: httpx.Client, variants: dict[str, Fetch], repeats: int) -> dict[str, tuple[float, float, int]]:
    """Interleaved runs (A B C A B C …); per variant: median end-to-end s, median transport s, bytes."""
    reference = None
    for name, fetch in variants.items():  # warm-up, and every format must give the same array
        array, _, _ = fetch(client)
        assert array.dtype == np.float32, name
        if reference is None:
            reference = array
        np.testing.assert_allclose(array, reference, rtol=0, atol=1e-6, err_msg=name)
    ends: dict[str, list[float]] = {name: [] for name in variants}
    transports: dict[str, list[float]] = {name: [] for name in variants}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        for name, fetch in variants.items():
            started = time.perf_counter()
            _, size, compute = fetch(client)
            elapsed = time.perf_counter() - started
            ends[name].append(elapsed)
            transports[name].append(elapsed - compute)
            sizes[name] = size
    return {name: (statistics.median(ends[name]), statistics.median(transports[name]), sizes[name]) for name in variants}


def cases() -> list[tuple[str, str, dict[str, Any], str, bool]]:
    """(label, path, params, output key, has v2)."""
    rows: list[tuple[str, str, dict[str, Any], str, bool]] = []
    for n in (10_000, 100_000):
        rows.append((f"/forward n={n:,}", "/forward", {"t": 25, "n": n, "seed": 1}, "points", False))
    for n in (10_000, 100_000):
        rows.append((f"/sample n={n:,} ddim-10", "/sample", {"n": n, "seed": 1, "sampler": "ddim", "steps": 10}, "points", True))
    rows.append(("/sample n=10,000 ddpm, 51 frames", "/sample", {"n": 10_000, "seed": 1, "trajectory_every": 1}, "trajectory", True))
    return rows


def formats(url: str, repeats: int) -> tuple[list[list[str]], list[list[str]]]:
    rows, ratios = [], []
    with httpx.Client(base_url=url, timeout=300.0) as client:
        for label, path, params, key, has_v2 in cases():
            variants = {
                "JSON": json_fetch(path, params, key, gzip=False),
                "JSON+gzip": json_fetch(path, params, key, gzip=True),
                "npy": npy_fetch(path, params),
            }
            if has_v2:
                variants["v2 binary"] = v2_fetch(params, key)
            results = measure(client, variants, repeats)
            json_end, json_transport, json_bytes = results["JSON"]
            for name, (end, transport, size) in results.items():
                link = end + size * 8 / LINK_BITS_PER_S
                rows.append([label, name, f"{size / 1e6:.3f}", f"{size / json_bytes:.2f}", f"{end * 1e3:.1f}", f"{transport * 1e3:.1f}", f"{link * 1e3:.0f}"])
            npy_end, npy_transport, npy_bytes = results["npy"]
            v2 = f"{results['v2 binary'][0] / npy_end:.2f}" if has_v2 else "–"
            ratios.append([label, f"{npy_bytes / json_bytes:.2f}", f"{json_end / npy_end:.1f}", f"{json_transport / npy_transport:.1f}", v2])
            print(f"  measured {label}", file=sys.stderr)
    return rows, ratios


def sse_first_frame(url: str, repeats: int, n: int = 100_000) -> list[list[str]]:
    """GET /sample/stream for an n-point DDPM chain: when the first frame's event arrives, against the whole chain."""
    firsts, totals, computes = [], [], []
    with httpx.Client(base_url=url, timeout=300.0) as client:
        for seed in range(repeats):
            started = time.perf_counter()
            first = None
            frames = 0
            with client.stream("GET", "/sample/stream", params={"n": n, "seed": seed, "trajectory_every": 10}) as response:
                response.raise_for_status()
                event = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "frame":
                        frames += 1
                        if first is None:
                            first = time.perf_counter() - started
                    elif line.startswith("data: ") and event == "done":
                        computes.append(orjson.loads(line[6:])["server_timing"]["compute_ms"] / 1000)
            totals.append(time.perf_counter() - started)
            assert first is not None and frames > 1
            firsts.append(first)
    first, total, compute = statistics.median(firsts), statistics.median(totals), statistics.median(computes)
    return [
        [f"n={n:,} ddpm, trajectory_every=10 ({frames} frames)", f"{first * 1e3:.0f}", f"{total * 1e3:.0f}", f"{compute * 1e3:.0f}", f"{first / total:.3f}"]
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sse", action=argparse.BooleanOptionalAction, default=True, help="also measure the SSE stream's first frame")
    args = p.parse_args()
    print(f"machine: {machine()}\n")
    # gzip on for any size, so that the JSON+gzip rows can ask for it; one torch thread: the machine is shared
    log = Path(tempfile.mkdtemp(prefix="swirl-formats-")) / "server.log"
    server = start_server(ROOT / args.checkpoint, log, ready_timeout=120.0, SWIRL_GZIP_MIN_BYTES="1", SWIRL_TORCH_THREADS="1", SWIRL_LOG_LEVEL="warning")
    try:
        rows, ratios = formats(server.url, args.repeats)
        print("bytes and end-to-end time per format (medians; end to end includes the client's decode to a float32 array):\n")
        print(table(["request", "format", "MB", "× JSON bytes", "end to end ms", "transport ms", "at 100 Mbit/s ms"], rows))
        print("\nratios (targets at n = 100k: npy ≤ 0.4× JSON bytes; /forward ≥ 5× faster; /sample transport ≥ 5× smaller; v2 ≤ 1.1× npy):\n")
        print(table(["request", "npy / JSON bytes", "JSON / npy end to end", "JSON / npy transport", "v2 binary / npy end to end"], ratios))
        if args.sse:
            print("\nSSE: first frame of GET /sample/stream against the whole chain (target: < 20%):\n")
            print(
                table(
                    ["request", "first frame ms", "whole stream ms", "server compute ms", "first / whole"],
                    sse_first_frame(server.url, max(3, args.repeats // 2)),
                )
            )
    except Exception:
        print(f"server log ({log}):\n{server.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
