"""Reliability and security with real processes on the tiny checkpoint.

Hostile input, overload, client disconnects, timeouts, broken checkpoints, SIGTERM,
restarts and a killed training run. These start their own servers and training runs: in the
container test, containers of the image (tests/servers.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from model.checkpoint import META_FILE, WEIGHTS_FILE, load_checkpoint, read_metadata
from tests.servers import Launched, Server, free_port, launch, start_server, stop_server

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(60.0)
T = 50  # the tiny checkpoint's schedule
BIG = 200_000  # SWIRL_MAX_POINTS of these servers: long enough chains to be caught in flight


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    handle = start_server(tiny_checkpoint, tmp_path_factory.mktemp("reliability") / "server.log", SWIRL_MAX_POINTS=str(BIG))
    try:
        yield handle
    finally:
        stop_server(handle)


def points_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["points"], dtype=np.float64)


def metric_value(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return 0.0


def rejected(url: str, reason: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "swirl_rejected_total" and sample.labels.get("reason") == reason:
                return sample.value
    return 0.0


def wait_for_queue_depth(url: str, depth: int, timeout: float = 20.0) -> bool:
    """Poll /readyz until ``depth`` sampling requests are in flight (admitted and not finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=TIMEOUT).json().get("queue_depth") == depth:
            return True
        time.sleep(0.01)
    return False


# -- hostile input -------------------------------------------------------------------------

# Query-string values that are wrong for an integer parameter (0 is added where it is wrong).
BAD_INTS = ["-1", "-99999999999999999999", "99999999999999999999999", "1000000000", "1.5", "1.0", "1e3", "", " ", "nan", "inf", "-inf"]
BAD_INTS += ["abc", "true", "0x1f", "1_000", "9" * 5000, "½", "\x00"]
BAD_FLOATS = ["-1", "-0.001", "1.001", "2", "1e308", "1e309", "", "nan", "NaN", "inf", "-inf", "Infinity", "abc", "true", "0.5.1"]
BAD_SAMPLERS = ["", "DDPM", "ddpm ", "euler", "ddim;ddpm", "0", "-1", "nan", "null", "x" * 5000]
# JSON values that are wrong for an integer / a float parameter.
BAD_JSON_INTS: list[Any] = [-1, -(10**30), 10**30, 10**9, 1.5, 2.0, "", "abc", "1.5", True, False, [], {}, [1], {"n": 1}]
BAD_JSON_FLOATS: list[Any] = [-1, -0.001, 1.001, 10**30, "", "abc", True, None, [], {}]
RAW_JSON_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


def sample_cases() -> list[tuple[str, dict[str, str], str]]:
    """(label, query parameters, field that must be named) for GET /sample."""
    cases: list[tuple[str, dict[str, str], str]] = []
    base = {"n": "5", "seed": "1"}
    for value in [*BAD_INTS, "0"]:
        cases.append((f"n={value[:20]!r}", {**base, "n": value}, "n"))
        cases.append((f"steps={value[:20]!r}", {**base, "sampler": "ddim", "steps": value}, "steps"))
        cases.append((f"trajectory_every={value[:20]!r}", {**base, "trajectory_every": value}, "trajectory_every"))
    for value in BAD_INTS:
        if value != "1000000000":  # a valid seed
            cases.append((f"seed={value[:20]!r}", {**base, "seed": value}, "seed"))
    cases.append(("seed=2**53", {**base, "seed": str(2**53)}, "seed"))
    cases.append(("ddpm steps=10", {**base, "steps": "10"}, "steps"))
    for value in BAD_FLOATS:
        cases.append((f"eta={value!r}", {**base, "sampler": "ddim", "steps": "5", "eta": value}, "eta"))
    cases.append(("eta with ddpm", {**base, "eta": "0.5"}, "eta"))
    for value in BAD_SAMPLERS:
        cases.append((f"sampler={value[:20]!r}", {**base, "sampler": value}, "sampler"))
    cases.append(("extra parameter", {**base, "bogus": "1"}, "bogus"))
    cases.append(("trajectory too large", {"n": str(BIG), "trajectory_every": "1"}, "trajectory_every"))
    return cases


def forward_cases() -> list[tuple[str, dict[str, str], str]]:
    cases: list[tuple[str, dict[str, str], str]] = []
    for value in [*BAD_INTS, str(T + 1)]:
        cases.append((f"t={value[:20]!r}", {"t": value, "n": "5"}, "t"))
    for value in BAD_INTS:
        cases.append((f"forward n={value[:20]!r}", {"t": "3", "n": value}, "n"))
    cases.append(("forward n=0", {"t": "3", "n": "0"}, "n"))
    for value in BAD_INTS:
        if value != "1000000000":
            cases.append((f"forward seed={value[:20]!r}", {"t": "3", "n": "5", "seed": value}, "seed"))
    cases.append(("t missing", {"n": "5"}, "t"))
    cases.append(("forward extra", {"t": "3", "x": "1"}, "x"))
    return cases


def body_cases() -> list[tuple[str, bytes, str]]:
    """(label, raw JSON body, field) for POST /sample."""
    cases: list[tuple[str, bytes, str]] = []

    def body(**fields: Any) -> bytes:
        return json.dumps({"n": 5, "seed": 1, **fields}).encode()

    for value in [*BAD_JSON_INTS, 0, None]:
        cases.append((f"n={value!r}", body(n=value), "n"))
        if value is not None:
            cases.append((f"steps={value!r}", body(sampler="ddim", steps=value), "steps"))
            cases.append((f"trajectory_every={value!r}", body(trajectory_every=value), "trajectory_every"))
        if value not in (0, 10**9, None):
            cases.append((f"seed={value!r}", body(seed=value), "seed"))
    for value in BAD_JSON_FLOATS:
        cases.append((f"eta={value!r}", body(sampler="ddim", steps=5, eta=value), "eta"))
    for raw in RAW_JSON_NON_FINITE:
        cases.append((f"eta={raw}", b'{"n": 5, "sampler": "ddim", "eta": ' + raw.encode() + b"}", "eta"))
        cases.append((f"n={raw}", b'{"n": ' + raw.encode() + b"}", "n"))
    for value in ["", "DDPM", "euler", None, 0, [], {}]:
        cases.append((f"sampler={value!r}", body(sampler=value), "sampler"))
    cases.append(("eta with dpmpp2m", body(sampler="dpmpp2m", steps=5, eta=1.0), "eta"))
    cases.append(("extra field", body(bogus=1), "bogus"))
    malformed: list[tuple[str, bytes]] = [
        ("truncated JSON", b'{"n": 5,'),
        ("not JSON", b"n=5&seed=1"),
        ("JSON array", b"[5, 1]"),
        ("JSON string", b'"{\\"n\\": 5}"'),
        ("JSON number", b"5"),
        ("JSON null", b"null"),
        ("empty body", b""),
        ("NUL bytes", b"\x00\x00\x00\x00"),
        ("deep nesting", b"[" * 4000 + b"]" * 4000),
        ("not UTF-8", b'{"n": "\xff\xfe"}'),
    ]
    for label, raw_body in malformed:
        cases.append((label, raw_body, "body"))
    # past POST /sample's limit: SWIRL_MAX_BODY_BYTES plus room for u per point (app.config.Settings.u_body_bytes)
    oversized = Settings(max_points=BIG).u_body_bytes() + 1
    cases.append(("oversized body", b'{"n": 5, "pad": "' + b"x" * oversized + b'"}', "body"))
    return cases


def judge(label: str, response: httpx.Response, field: str) -> str | None:
    """None if ``response`` is a 4xx JSON error naming ``field``, else what is wrong with it."""
    if not 400 <= response.status_code < 500:
        return f"{label}: status {response.status_code}: {response.text[:200]}"
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"{label}: {response.status_code} without a JSON error: {response.text[:200]}"
    if field not in error:
        return f"{label}: {response.status_code} error does not name {field!r}: {error[:200]}"
    return None


def test_hostile_input_is_always_a_4xx_naming_the_field(server: Server) -> None:
    reference: dict[str, Any] = {"n": 64, "seed": 99, "sampler": "ddim", "steps": 10, "eta": 0.3}
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        before = points_of(http.get("/sample", params=reference))
        problems: list[str] = []
        count = 0
        for label, params, field in sample_cases():
            problems.append(judge(f"GET /sample {label}", http.get("/sample", params=params), field) or "")
            count += 1
        for label, params, field in forward_cases():
            problems.append(judge(f"GET /forward {label}", http.get("/forward", params=params), field) or "")
            count += 1
        for label, raw, field in body_cases():
            response = http.post("/sample", content=raw, headers={"content-type": "application/json"})
            problems.append(judge(f"POST /sample {label}", response, field) or "")
            count += 1
        problems = [p for p in problems if p]
        assert count > 250
        assert not problems, f"{len(problems)} of {count} hostile requests misanswered:\n" + "\n".join(problems)
        # the worker still serves, and serves the same answer as before the battery
        after = points_of(http.post("/sample", json=reference))
        np.testing.assert_array_equal(before, after)
        assert http.get("/readyz").status_code == 200
        metrics = http.get("/metrics").text
    server_errors = [line for line in metrics.splitlines() if line.startswith("swirl_requests_total") and 'status="5' in line]
    assert not server_errors, server_errors
    assert "Traceback" not in server.log()


# -- overload, disconnects, timeouts --------------------------------------------------------


async def test_overload_sheds_with_503_and_serves_the_admitted_correctly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    busy = start_server(tiny_checkpoint, tmp_path / "server.log", SWIRL_MAX_QUEUE="3", SWIRL_BATCHING="false", SWIRL_MAX_POINTS=str(BIG))
    try:
        requests = [{"n": 1000 + 100 * i, "seed": 7000 + i} for i in range(30)]
        async with httpx.AsyncClient(base_url=busy.url, timeout=TIMEOUT, limits=httpx.Limits(max_connections=64)) as http:
            blocker = asyncio.create_task(http.get("/sample", params={"n": BIG, "seed": 1}))  # keeps the worker busy
            await asyncio.sleep(0.5)
            responses = await asyncio.gather(*(http.post("/sample", json=p) for p in requests))
            assert (await blocker).status_code == 200
            statuses = [r.status_code for r in responses]
            assert set(statuses) <= {200, 503}, statuses
            shed = [r for r in responses if r.status_code == 503]
            served = [(p, r) for p, r in zip(requests, responses) if r.status_code == 200]
            assert shed and len(served) >= 2, statuses
            for r in shed:
                assert int(r.headers["retry-after"]) >= 1 and "SWIRL_MAX_QUEUE" in r.json()["error"]
            for params, r in served:  # each admitted answer is whole and equal to the request made alone
                body = r.json()
                assert body["seed"] == params["seed"] and len(body["points"]) == params["n"]
                alone = await http.post("/sample", json=params)
                np.testing.assert_array_equal(points_of(r), points_of(alone))
            assert (await http.get("/readyz")).status_code == 200
        assert rejected(busy.url, "queue_full") == len(shed)
    finally:
        stop_server(busy)


def test_a_client_that_leaves_mid_chain_stops_its_rows(server: Server) -> None:
    gone_before = rejected(server.url, "client_gone")
    cancelled_before = metric_value(server.url, "swirl_cancelled_mid_chain_total")
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /sample?n={BIG}&seed=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert wait_for_queue_depth(server.url, 1)  # admitted: its rows are in the engine
        time.sleep(0.2)
    # the client is gone mid-chain: its rows leave the engine at the next tick
    deadline = time.monotonic() + 20
    while metric_value(server.url, "swirl_cancelled_mid_chain_total") == cancelled_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric_value(server.url, "swirl_cancelled_mid_chain_total") == cancelled_before + 1
    assert rejected(server.url, "client_gone") == gone_before + 1
    assert wait_for_queue_depth(server.url, 0)  # nothing left behind
    assert httpx.get(f"{server.url}/readyz", timeout=TIMEOUT).json()["queue_work"] == 0
    follow_up = httpx.get(f"{server.url}/sample", params={"n": 10, "seed": 2, "sampler": "ddim", "steps": 3}, timeout=TIMEOUT)
    assert follow_up.status_code == 200 and len(follow_up.json()["points"]) == 10


def test_request_timeout_is_504_and_the_server_carries_on(tiny_checkpoint: Path, tmp_path: Path) -> None:
    slow = start_server(tiny_checkpoint, tmp_path / "server.log", SWIRL_REQUEST_TIMEOUT_S="0.05", SWIRL_MAX_POINTS=str(BIG))
    try:
        response = httpx.get(f"{slow.url}/sample", params={"n": BIG, "seed": 1}, timeout=TIMEOUT)
        assert response.status_code == 504, response.text
        assert "SWIRL_REQUEST_TIMEOUT_S" in response.json()["error"]
        assert rejected(slow.url, "timeout") == 1
        # the abandoned chain leaves the engine at its next tick; small requests are then served again
        deadline = time.monotonic() + 60
        while True:
            quick = httpx.get(f"{slow.url}/sample", params={"n": 5, "seed": 1, "sampler": "ddim", "steps": 2}, timeout=TIMEOUT)
            if quick.status_code == 200 or time.monotonic() > deadline:
                break
            assert quick.status_code in (503, 504), quick.text  # 503: the abandoned backlog not yet reaped
            time.sleep(0.2)
        assert quick.status_code == 200 and len(quick.json()["points"]) == 5
        assert metric_value(slow.url, "swirl_cancelled_mid_chain_total") == 1
    finally:
        stop_server(slow)


# -- start-up failures ----------------------------------------------------------------------


def _broken_checkpoints(good: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """name → (checkpoint directory, text the start-up error must contain)."""
    cases: dict[str, tuple[Path, str]] = {"missing directory": (root / "does-not-exist", "checkpoint directory not found")}

    def copy(name: str) -> Path:
        target = root / name
        shutil.copytree(good, target)
        return target

    corrupt = copy("corrupt")
    weights = bytearray((corrupt / WEIGHTS_FILE).read_bytes())
    weights[-16:] = bytes(16)
    (corrupt / WEIGHTS_FILE).write_bytes(bytes(weights))
    cases["corrupt weights"] = (corrupt, "sha256 mismatch")

    truncated = copy("truncated")
    blob = (truncated / WEIGHTS_FILE).read_bytes()[:100]
    (truncated / WEIGHTS_FILE).write_bytes(blob)
    meta = read_metadata(truncated)
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # a consistent hash of a truncated file
    (truncated / META_FILE).write_text(json.dumps(meta))
    cases["truncated weights"] = (truncated, "not a valid safetensors file")

    tampered = copy("tampered")
    meta = read_metadata(tampered)
    meta["weights_sha256"] = "0" * 64
    (tampered / META_FILE).write_text(json.dumps(meta))
    cases["mismatched sha256"] = (tampered, "sha256 mismatch")

    future = copy("future")
    meta = read_metadata(future)
    meta["format_version"] = 99
    (future / META_FILE).write_text(json.dumps(meta))
    cases["unknown format version"] = (future, "unknown checkpoint format version 99")

    return cases


@pytest.fixture(scope="module")
def failed_starts(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, float, str]]:
    """Start one server per broken checkpoint, all at once; name → (exit code, output, seconds, expected text)."""
    root = tmp_path_factory.mktemp("broken")
    cases = _broken_checkpoints(tiny_checkpoint, root)
    started = time.monotonic()
    processes: dict[str, Launched] = {}
    for name, (path, _) in cases.items():
        env = {"SWIRL_CHECKPOINT": str(path), "SWIRL_DEVICE": "cpu", "SWIRL_HOST": "127.0.0.1", "SWIRL_PORT": str(free_port())}
        env["SWIRL_WORKERS"] = "1"  # one process: its own exit status and log (several: tests/integration/test_processes.py)
        processes[name] = launch(env)
    results = {}
    for name, process in processes.items():
        output = process.communicate(timeout=120)
        results[name] = (process.wait(), output, time.monotonic() - started, cases[name][1])
    return results


@pytest.mark.parametrize("case", ["missing directory", "corrupt weights", "truncated weights", "mismatched sha256", "unknown format version"])
def test_a_broken_checkpoint_stops_start_up_with_a_clear_message(failed_starts: dict[str, tuple[int, str, float, str]], case: str) -> None:
    code, output, seconds, expected = failed_starts[case]
    assert code not in (0, None, -signal.SIGKILL), (code, output[-2000:])
    assert seconds < 90, f"took {seconds:.0f} s to give up"  # generous: several start at once on a busy machine
    assert "cannot start" in output and expected in output, output[-2000:]
    assert "Uvicorn running" not in output and "ready in" not in output


# -- shutdown and restarts ------------------------------------------------------------------


def refuses_new_requests(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/sample", params={"n": 3, "seed": 1}, timeout=5)
    except httpx.TransportError:
        return True  # connection refused: the listening socket is closed
    return response.status_code == 503


SEEDED_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("/sample", {"n": 200, "seed": 1}),
    ("/sample", {"n": 200, "seed": 2, "sampler": "ddim", "steps": 10, "eta": 0.7}),
    ("/sample", {"n": 200, "seed": 3, "sampler": "dpmpp2m", "steps": 8, "trajectory_every": 4}),
    ("/forward", {"t": 17, "n": 300, "seed": 4}),
]
# With batching off: one is running when SIGTERM arrives, the other three still queued.
IN_FLIGHT = [{"n": BIG // 2, "seed": 300 + i} for i in range(4)]
LIFECYCLE_ENV: dict[str, Any] = {"SWIRL_MAX_POINTS": str(BIG), "SWIRL_BATCHING": "false"}


def seeded_answers(url: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
        bodies = []
        for path, params in SEEDED_QUERIES:
            response = http.get(path, params=params)
            assert response.status_code == 200, response.text
            bodies.append(response.json())
        return bodies


def post_concurrently(url: str, requests: list[dict[str, Any]]) -> list[Future[httpx.Response]]:
    pool = ThreadPoolExecutor(max_workers=len(requests))
    futures = [pool.submit(httpx.post, f"{url}/sample", json=p, timeout=TIMEOUT) for p in requests]
    pool.shutdown(wait=False)
    return futures


@dataclass
class Lifecycle:
    """What happened to a server that was sent SIGTERM mid-request, and to its successor."""

    busy_at_sigterm: bool  # the in-flight requests had not finished when SIGTERM was sent
    refused_after_sigterm: bool
    in_flight: list[httpx.Response]
    exit_code: int | None
    exit_seconds: float
    log: str
    before: list[dict[str, Any]]  # SEEDED_QUERIES on the first process
    after: list[dict[str, Any]]  # SEEDED_QUERIES on the restarted process
    in_flight_again: list[httpx.Response]  # IN_FLIGHT on the restarted process


@pytest.fixture(scope="module")
def lifecycle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    """Start, answer, SIGTERM with requests in flight, wait for the exit, restart, answer again."""
    root = tmp_path_factory.mktemp("lifecycle")
    first = start_server(tiny_checkpoint, root / "first.log", **LIFECYCLE_ENV)
    try:
        before = seeded_answers(first.url)
        in_flight = post_concurrently(first.url, IN_FLIGHT)
        busy = wait_for_queue_depth(first.url, len(IN_FLIGHT)) and not any(f.done() for f in in_flight)
        first.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        time.sleep(0.5)
        refused = refuses_new_requests(first.url)
        answers = [f.result() for f in in_flight]
        try:
            code: int | None = first.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        exit_seconds = time.monotonic() - terminated
    finally:
        stop_server(first)
    second = start_server(tiny_checkpoint, root / "second.log", **LIFECYCLE_ENV)
    try:
        after = seeded_answers(second.url)
        again = [f.result() for f in post_concurrently(second.url, IN_FLIGHT)]
    finally:
        stop_server(second)
    return Lifecycle(busy, refused, answers, code, exit_seconds, first.log(), before, after, again)


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(lifecycle: Lifecycle) -> None:
    assert lifecycle.busy_at_sigterm, "one request should have been running and three queued at SIGTERM; the test needs a longer chain"
    assert lifecycle.refused_after_sigterm, "a new request was served after SIGTERM"
    for params, response in zip(IN_FLIGHT, lifecycle.in_flight):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["seed"] == params["seed"] and len(body["points"]) == params["n"]
        assert np.isfinite(points_of(response)).all()
    assert lifecycle.exit_code == 0, lifecycle.log[-2000:]
    assert lifecycle.exit_seconds < 60
    assert "finishing admitted requests" in lifecycle.log and "worker stopped" in lifecycle.log
    assert "Traceback" not in lifecycle.log


def test_seeded_results_are_identical_across_a_restart(lifecycle: Lifecycle) -> None:
    assert lifecycle.before == lifecycle.after  # bit for bit, trajectory and model id included
    # the answers given during shutdown are the ones the restarted server gives
    for finished, again in zip(lifecycle.in_flight, lifecycle.in_flight_again):
        np.testing.assert_array_equal(points_of(finished), points_of(again))


# -- training -------------------------------------------------------------------------------


def test_a_killed_training_run_leaves_the_previous_checkpoint_intact(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "current"
    shutil.copytree(tiny_checkpoint, target)
    previous = load_checkpoint(target).sha256
    listing = sorted(p.name for p in target.parent.iterdir())
    log_path = tmp_path / "train.log"
    args = ["-m", "model.train", "--out", str(target), "--overwrite", "--steps", "100000", "--hidden", "16", "--depth", "1"]
    args += ["--n-train", "2000", "--batch-size", "64", "--device", "cpu", "--no-progress"]
    with open(log_path, "wb") as handle:  # in a container: the folder mounted read-write, as the compose `train` job has it
        process = launch({}, args=args, stdout=handle, writable=[target.parent])
    try:
        deadline = time.monotonic() + 90
        while "training on" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the 100 000 steps
        assert process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    checkpoint = load_checkpoint(target)
    assert checkpoint.sha256 == previous == read_metadata(target)["weights_sha256"]
    assert sorted(p.name for p in target.parent.iterdir()) == listing
