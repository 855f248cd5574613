"""gRPC against HTTP: 64 concurrent n = 10,000 requests, side by side on one server.

    .venv/bin/python benchmarks/grpc.py [--rounds 5] [--concurrency 64] [--n 10000] [--sampler ddim --steps 10]

One server process (SWIRL_WORKERS=1, the shipped model) serves all three transports; rounds of
``concurrency`` requests at once alternate between them (A B C A B C …, so that machine noise
hits them alike), each request a different seed:

* gRPC: ``ModelInfer`` over one grpc.aio channel (HTTP/2, every call multiplexed on it), the
  points back as raw_output_contents;
* HTTP v2 binary: ``POST /v2/models/swirl/infer`` with binary_data_output, one HTTP/1.1
  connection per request;
* HTTP .npy: ``GET /sample`` with ``Accept: application/x-npy``, one connection per request.

The HTTP load generator is a raw asyncio socket client (tens of µs per request), since httpx
would spend milliseconds of the same two cores; the gRPC client is grpcio's own. Reported per
transport: requests per second of wall time, each request's latency (p50, p99), and the server's
CPU seconds per request (utime + stime from /proc: robust where throughput scatters on a shared
machine). The three transports answer the same seed with the same points: checked first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder heads sys.path, and this file (grpc.py) would shadow grpcio's `grpc`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from app.wire import grpc_messages as pb  # noqa: E402
from benchmarks._common import free_port, machine, table  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Fetch = Callable[[int], Awaitable[np.ndarray]]  # seed → (n, 2) float32 points


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def http_request(host: str, port: int, head: str, body: bytes = b"") -> tuple[dict[bytes, bytes], bytes]:
    """One HTTP/1.1 request over a fresh loopback connection; the headers (lower-case names) and body of its 200 answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        header = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = header.rstrip().split(b"\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)}
        content = await reader.readexactly(int(headers[b"content-length"]))
        assert int(status_line.split(b" ", 2)[1]) == 200, content[:300]
        return headers, content
    finally:
        writer.close()


def npy_fetch(host: str, port: int, query: str) -> Fetch:
    async def fetch(seed: int) -> np.ndarray:
        target = f"/sample?{query}&seed={seed}"
        _, content = await http_request(host, port, f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/x-npy\r\nConnection: close\r\n\r\n")
        header_length = struct.unpack("<H", content[8:10])[0]
        return np.frombuffer(content, dtype="<f4", offset=10 + header_length).reshape(-1, 2)

    return fetch


def v2_fetch(host: str, port: int, inputs: dict[str, tuple[str, object]]) -> Fetch:
    async def fetch(seed: int) -> np.ndarray:
        tensors = [{"name": k, "datatype": d, "shape": [1], "data": [v]} for k, (d, v) in {**inputs, "seed": ("INT64", seed)}.items()]
        body = orjson.dumps({"inputs": tensors, "parameters": {"binary_data_output": True}})
        head = (
            f"POST /v2/models/swirl/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        headers, content = await http_request(host, port, head, body)
        length = int(headers[b"inference-header-content-length"])
        return np.frombuffer(content, dtype="<f4", offset=length).reshape(-1, 2)

    return fetch


def grpc_fetch(channel: grpc.aio.Channel, inputs: dict[str, tuple[str, object]]) -> Fetch:
    request_class, response_class = pb.METHODS["ModelInfer"]
    path = pb.method_path("ModelInfer")
    call = channel.unary_unary(path, request_serializer=request_class.SerializeToString, response_deserializer=response_class.FromString)

    async def fetch(seed: int) -> np.ndarray:
        request = pb.ModelInferRequest(model_name="swirl")
        for name, (datatype, value) in {**inputs, "seed": ("INT64", seed)}.items():
            contents = request.inputs.add(name=name, datatype=datatype, shape=[1]).contents
            if datatype == "BYTES":
                contents.bytes_contents.append(str(value).encode())
            else:
                contents.int64_contents.append(int(value))  # type: ignore[call-overload]
        response = await call(request, timeout=600)
        return np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(-1, 2)

    return fetch


async def measure(fetches: dict[str, Fetch], pid: int, rounds: int, concurrency: int) -> dict[str, dict[str, float]]:
    latencies: dict[str, list[float]] = {name: [] for name in fetches}
    walls: dict[str, float] = dict.fromkeys(fetches, 0.0)
    cpus: dict[str, float] = dict.fromkeys(fetches, 0.0)

    async def timed(fetch: Fetch, seed: int) -> float:
        started = time.perf_counter()
        await fetch(seed)
        return time.perf_counter() - started

    for fetch in fetches.values():  # warm-up: connections, the plan caches
        await asyncio.gather(*[fetch(seed) for seed in range(8)])
    for index in range(rounds):
        for name, fetch in fetches.items():
            cpu, started = cpu_seconds(pid), time.perf_counter()
            latencies[name] += await asyncio.gather(*[timed(fetch, 1000 * index + seed) for seed in range(concurrency)])
            walls[name] += time.perf_counter() - started
            cpus[name] += cpu_seconds(pid) - cpu
    requests = rounds * concurrency
    return {
        name: {
            "rps": requests / walls[name],
            "p50": statistics.median(latencies[name]) * 1000,
            "p99": float(np.percentile(latencies[name], 99)) * 1000,
            "cpu_ms": cpus[name] / requests * 1000,
        }
        for name in fetches
    }


async def run(args: argparse.Namespace, host: str, port: int, grpc_port: int, pid: int) -> dict[str, dict[str, float]]:
    inputs: dict[str, tuple[str, object]] = {"n": ("INT64", args.n), "sampler": ("BYTES", args.sampler), "steps": ("INT64", args.steps)}
    query = f"n={args.n}&sampler={args.sampler}&steps={args.steps}"
    async with grpc.aio.insecure_channel(f"{host}:{grpc_port}") as channel:
        fetches = {
            "gRPC (ModelInfer, raw tensors)": grpc_fetch(channel, inputs),
            "HTTP v2 binary tensors": v2_fetch(host, port, inputs),
            "HTTP /sample .npy": npy_fetch(host, port, query),
        }
        answers = [await fetch(7) for fetch in fetches.values()]
        for answer in answers[1:]:
            np.testing.assert_array_equal(answer, answers[0])  # one seed, the same points whatever the transport
        assert answers[0].shape == (args.n, 2)
        return await measure(fetches, pid, args.rounds, args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of concurrent requests per transport")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--n", type=int, default=10_000, help="points per request")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "swiss-roll")
    args = parser.parse_args()
    grpc_port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "server.log"
        server = start_server(args.checkpoint, log, SWIRL_GRPC_PORT=str(grpc_port), SWIRL_LOG_LEVEL="warning", SWIRL_ACCESS_LOG="false")
        try:
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            results = asyncio.run(run(args, host, int(port), grpc_port, server.launched.process.pid))
        finally:
            stop_server(server)
    print(machine())
    print(f"{args.concurrency} concurrent requests of n = {args.n:,} ({args.sampler}, {args.steps} steps), {args.rounds} rounds each, one server process\n")
    rows = [(name, r["rps"], r["p50"], r["p99"], r["cpu_ms"]) for name, r in results.items()]
    print(table(["transport", "requests/s", "p50 ms", "p99 ms", "server CPU ms/request"], rows))


if __name__ == "__main__":
    main()
