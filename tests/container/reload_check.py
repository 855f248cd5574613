"""Reload check of a running Swirl server (the container test's retraining step).

    python tests/container/reload_check.py URL NAME SHA256 -- COMMAND...

Keeps a steady load of seeded requests on the default model, runs COMMAND (which makes the
server reload, e.g. ``docker compose kill -s SIGHUP api``), waits until every server
process serves model NAME with id SHA256 (``GET /models`` over fresh connections names
the answering process), samples it, and fails if any request of the load failed or if a
process changed (a restart instead of a reload).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import NoReturn

import httpx

CLOSE = {"Connection": "close"}  # fresh connections reach every process
TIMEOUT_S = 120.0


def fail(message: str) -> NoReturn:
    print(f"reload: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def processes(url: str, seconds: float = 5.0) -> dict[int, dict[str, str | None]]:
    """pid → {model name: id} for every process that answered /models within ``seconds``."""
    seen: dict[int, dict[str, str | None]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/models", headers=CLOSE, timeout=30).json()
        seen[body["process"]] = {m["name"]: m["id"] for m in body["models"] if m["state"] == "available"}
    return seen


def main() -> None:
    if "--" not in sys.argv or len(sys.argv) < 6:
        fail("usage: reload_check.py URL NAME SHA256 -- COMMAND...")
    split = sys.argv.index("--")
    url, name, sha = (a.rstrip("/") for a in sys.argv[1:split])
    command = sys.argv[split + 1 :]
    before = processes(url)
    print(f"reload: {len(before)} server process(es) before: {sorted(before)}")
    if any(name in models for models in before.values()):
        fail(f"model {name} is served before the reload")
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered
        with httpx.Client(base_url=url, timeout=60, headers=CLOSE) as client:
            seed = 0
            while not stop.is_set():
                try:
                    response = client.get("/sample", params={"n": 200, "seed": seed % 4, "sampler": "ddim", "steps": 10})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                answered += 1
                seed += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        subprocess.run(command, check=True)
        deadline = started + TIMEOUT_S
        while True:
            now = processes(url, seconds=2.0)
            if set(now) >= set(before) and all(models.get(name) == sha for pid, models in now.items() if pid in before):
                break
            if time.monotonic() > deadline:
                fail(f"not every process serves {name}={sha[:12]} after {TIMEOUT_S:.0f} s: {now}")
        print(f"reload: every process serves {name} ({sha[:12]}) {time.monotonic() - started:.1f} s after the signal")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    if failures:
        fail(f"{len(failures)} of {answered} requests failed during the reload: {failures[:3]}")
    after = processes(url)
    if set(after) != set(before):
        fail(f"the server processes changed (a restart, not a reload): {sorted(before)} → {sorted(after)}")
    body = httpx.get(f"{url}/sample", params={"n": 100, "seed": 1, "model": name}, timeout=60).json()
    if body.get("model") != sha or body.get("model_name") != name or len(body.get("points", [])) != 100:
        fail(f"/sample?model={name} answered {str(body)[:300]}")
    print(f"reload: {answered} requests during the reload, none failed; /sample?model={name} answers with id {sha[:12]}")


if __name__ == "__main__":
    main()
