"""Start the product as the tests need it: ``python -m app`` (or another ``python -m`` entry point)
as a local process, or, when SWIRL_CONTAINER_IMAGE names an image, as a container of that image.

The container test (tests/container/run.sh) sets SWIRL_CONTAINER_IMAGE to the image it built, so
that the integration tests which start their own servers (other settings, several processes,
signals, exit codes, broken checkpoints, a model repository to reload) run the containerised
product too. Such a container

* runs the image's own command and user (uid 10001), with the compose file's hardening
  (read-only root filesystem, a tmpfs on /tmp);
* shares the host's network (``--network host``) and listens on 127.0.0.1 only, so that its port,
  the peer addresses it sees and the client disconnects it notices are those of a local process;
* gets the settings the test passes (``-e``) over the image's defaults; where the image's differ
  from the app's own (SWIRL_HOST, SWIRL_MODELS) the app's apply unless the test sets them;
* sees every existing path named by SWIRL_CHECKPOINT and SWIRL_MODELS bind-mounted read-only at the
  same path, so that settings need no translation (``writable`` paths are mounted read-write);
  those paths are made world-readable first (the image's user is not the host's);
* runs in the foreground: its output goes where a local process's would, and the ``docker run``
  client exits with the container's exit code. Signals go through ``docker kill --signal``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SWIRL_CONTAINER_IMAGE", "")
# A label on every test container (KEY=VALUE), by which the container test removes any left behind.
LABEL = os.environ.get("SWIRL_CONTAINER_LABEL", "swirl-test=1")
APP = ("-m", "app")
# The app's defaults where the image sets deployment values (0.0.0.0; every shipped model).
CONTAINER_DEFAULTS = {"SWIRL_HOST": "127.0.0.1", "SWIRL_MODELS": ""}
PATH_SETTINGS = ("SWIRL_CHECKPOINT", "SWIRL_MODELS")


def in_containers() -> bool:
    """True when the product runs as containers of SWIRL_CONTAINER_IMAGE."""
    return bool(IMAGE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def share(path: Path, writable: bool = False) -> None:
    """Let the image's user read ``path`` (and everything under it), and write it if ``writable``."""
    bits = 0o777 if writable else 0o555
    for directory, _, files in os.walk(path):
        os.chmod(directory, os.stat(directory).st_mode | bits)
        for name in files:
            target = os.path.join(directory, name)
            os.chmod(target, os.stat(target).st_mode | (0o666 if writable else 0o444))


def _mounts(env: Mapping[str, str], writable: Sequence[Path]) -> list[str]:
    options: list[str] = []
    paths = [Path(p) for key in PATH_SETTINGS for p in env.get(key, "").split(":") if p]
    for path in dict.fromkeys(p.resolve() for p in paths if p.is_absolute() and p.exists()):
        share(path)
        options += ["-v", f"{path}:{path}:ro"]
    for path in writable:
        path = path.resolve()
        share(path, writable=True)
        options += ["-v", f"{path}:{path}"]
    return options


@dataclass
class Launched:
    """A started ``python -m …``: a local process, or the ``docker run`` client of a container."""

    process: subprocess.Popen[bytes]
    container: str | None = None

    def send_signal(self, sig: signal.Signals) -> None:
        if self.container is None:
            self.process.send_signal(sig)
        else:
            subprocess.run(["docker", "kill", "--signal", sig.name, self.container], check=True, capture_output=True, timeout=60)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (a container's: ``docker run`` exits with it)."""
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.container is not None:
            subprocess.run(["docker", "rm", "--force", self.container], capture_output=True, timeout=60)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def communicate(self, timeout: float) -> str:
        """Wait for the exit (killing it after ``timeout`` s); its output (stdout=PIPE)."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            output, _ = self.process.communicate()
        return output.decode(errors="replace")


def launch(
    env: Mapping[str, str],
    *,
    args: Sequence[str] = APP,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    writable: Sequence[Path] = (),
) -> Launched:
    """``python *args`` with the settings ``env`` (on top of this environment when local), output to ``stdout``."""
    if not IMAGE:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, stdout=stdout, stderr=subprocess.STDOUT)
        return Launched(process)
    name = f"swirl-test-{uuid.uuid4().hex[:12]}"
    command = ["docker", "run", "--rm", "--name", name, "--label", LABEL, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    for key, value in {**CONTAINER_DEFAULTS, **env}.items():
        command += ["-e", f"{key}={value}"]
    command += _mounts(env, writable)
    if tuple(args) == APP:
        command.append(IMAGE)  # the image's own CMD
    else:
        command += ["--entrypoint", "python", IMAGE, *args]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT)
    return Launched(process, name)


@dataclass
class Server:
    url: str
    launched: Launched
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: signal.Signals) -> None:
        self.launched.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        return self.launched.wait(timeout)


def server_env(checkpoint: Path, port: int, **env: str) -> dict[str, str]:
    return {
        "SWIRL_CHECKPOINT": str(checkpoint),
        "SWIRL_DEVICE": "cpu",
        "SWIRL_HOST": "127.0.0.1",
        "SWIRL_PORT": str(port),
        "SWIRL_LOG_LEVEL": "info",
        "SWIRL_WORKERS": "1",  # one process unless a test asks for more: /readyz and /metrics then describe it alone
        "SWIRL_GRPC_PORT": "0",  # no gRPC unless a test asks: servers started side by side would all want 8001
        **env,
    }


def start_server(checkpoint: Path, log_path: Path, ready_timeout: float = 180.0, **env: str) -> Server:
    """The app on a free loopback port (a process, or a container: see the module); waits for /readyz = 200."""
    port = free_port()
    settings = server_env(checkpoint, port, **env)
    handle = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    try:
        launched = launch(settings, stdout=handle)
    finally:
        handle.close()  # the child holds its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if launched.poll() is not None:
            raise RuntimeError(f"server exited with {launched.process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return Server(url, launched, log_path, settings)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    launched.kill()
    raise RuntimeError(f"server not ready in {ready_timeout} s:\n{log_path.read_text(errors='replace')}")


def stop_server(server: Server) -> None:
    """SIGTERM (a graceful drain), then SIGKILL after 30 s; a no-op when it has exited already."""
    launched = server.launched
    if launched.poll() is None:
        try:
            launched.send_signal(signal.SIGTERM)
            launched.wait(timeout=30)
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
            launched.kill()
    elif launched.container is not None:  # the client is gone; the container must be too
        subprocess.run(["docker", "rm", "--force", launched.container], capture_output=True, timeout=60)
