"""Helpers shared by the benchmark scripts: machine description and markdown tables."""

from __future__ import annotations

import os
import platform
import random
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}, {time.strftime('%Y-%m-%d')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def interleaved_medians(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Run the variants round-robin (A B C A B C …) so machine noise hits them alike; median seconds each."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


async def raw_get(host: str, port: int, target: str, headers: str = "") -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET over one fresh loopback connection: (status, body).

    httpx's AsyncClient spends several milliseconds of CPU per request once dozens are in
    flight, on the same two cores as the server; a load generator that costly measures
    itself. This one costs tens of microseconds. ``headers``: extra header lines, each ending in CRLF.
    """
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
        body = await (reader.readexactly(length) if length is not None else reader.read())
        return status, body
    finally:
        writer.close()


async def closed_loop_latencies(port: int, clients: int, duration: float, target: Callable[[random.Random], str]) -> tuple[list[float], int, float]:
    """``clients`` closed-loop clients sending ``raw_get(target(rng))`` (each client its own
    ``random.Random(index)``) for ``duration`` seconds: (latencies in s, non-200 answers, elapsed s).
    A request that fails at the socket counts as a non-200 answer."""
    import asyncio

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def client(index: int) -> None:
        nonlocal errors
        rng = random.Random(index)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status, _ = await raw_get("127.0.0.1", port, target(rng))
            except OSError:
                status = 0
            latencies.append(time.perf_counter() - started)
            errors += status != 200

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float, log_path: Path, poll_s: float = 0.2) -> None:
    """Poll ``url``/readyz until it answers 200; RuntimeError with the log's tail if the server
    exits first or is not ready in ``timeout`` seconds (then it is killed)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout:g} s:\n{log_path.read_text(errors='replace')[-3000:]}")


def process_tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every process below it, in seconds (from /proc): a server's
    CPU cost, which scatters far less than wall-clock figures on a shared machine."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            ticks += int(stats[current][11]) + int(stats[current][12])
        todo.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")
