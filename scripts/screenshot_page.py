"""Screenshot the Swirl page for the README: ``python scripts/screenshot_page.py [--url URL] [--out docs/page.png]``.

Without ``--url`` it starts ``python -m app`` on a free loopback port with the given checkpoint (the shipped
``checkpoints/swiss-roll`` by default), loads ``/`` in Debian's headless Chromium (never a downloaded browser),
waits until the forward panel is drawn and the sampling animation has reached its last frame, and writes a
full-page PNG at a 1440×900 viewport.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}
PAGE_READY = """() => {
    const s = window.swirl;
    return !!s && s.ready.schedule && s.ready.model && s.ready.forward && s.ready.reference
        && s.ready.sample && s.sampleDone && !s.playing && s.frameIndex === s.frameCount - 1;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``/readyz`` until it answers 200; exits with the server's log if it dies or never gets ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and log is not None and process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    output = f":\n{log.read_text(errors='replace')}" if log is not None else ""
    raise SystemExit(f"{url} not ready after {timeout:g} s{output}")


@contextmanager
def serve(checkpoint: Path, device: str, timeout: float) -> Iterator[str]:
    """``python -m app`` on a free loopback port; yields the base URL, stops the server afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "SWIRL_CHECKPOINT": str(checkpoint),
        "SWIRL_DEVICE": device,
        "SWIRL_HOST": "127.0.0.1",
        "SWIRL_PORT": str(port),
        "SWIRL_LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryDirectory(prefix="swirl-screenshot-") as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_ready(url, timeout, process, log)
                yield url
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def screenshot(url: str, out: Path, timeout_s: float) -> list[str]:
    """Load the page, wait for the finished animation, write ``out``; returns console errors seen."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # launch() gives every run a fresh, throw-away user-data dir
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url.rstrip('/')}/", wait_until="load")
            page.wait_for_function(PAGE_READY, timeout=timeout_s * 1000)
            page.wait_for_timeout(200)  # let the last frame and layout settle
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running server (default: start one on --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "swiss-roll", help="checkpoint to serve when no --url")
    parser.add_argument("--device", default="cpu", help="SWIRL_DEVICE for the server this script starts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png", help="PNG to write")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server and for the page")
    args = parser.parse_args(argv)

    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.url:
        wait_ready(args.url.rstrip("/"), args.timeout)
        errors = screenshot(args.url, args.out, args.timeout)
    else:
        if not (args.checkpoint / "checkpoint.json").exists():
            print(f"no checkpoint at {args.checkpoint}; pass --checkpoint or --url", file=sys.stderr)
            return 2
        with serve(args.checkpoint, args.device, args.timeout) as url:
            errors = screenshot(url, args.out, args.timeout)
    for error in errors:
        print(f"console error: {error}", file=sys.stderr)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
