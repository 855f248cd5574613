"""The README's API examples run as written against a real server (curl and httpx)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_URL = "http://127.0.0.1:8000"

pytestmark = pytest.mark.integration


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def curl_commands() -> list[str]:
    text = "\n".join(block for block in blocks("sh") if DEFAULT_URL in block)
    joined = text.replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def test_readme_has_curl_and_httpx_examples() -> None:
    assert len(curl_commands()) >= 4
    assert any("httpx" in block for block in blocks("python"))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work(live_server: str, tmp_path: Path) -> None:
    for command in curl_commands():
        completed = subprocess.run(
            command.replace(DEFAULT_URL, live_server) + " --silent --show-error --write-out '\\n%{http_code}'",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=tmp_path,  # where -o writes
        )
        body, status = completed.stdout.rsplit("\n", 1)
        invalid = "n=0" if "n=0" in command else "model=nope" if "model=nope" in command else None
        expected = 422 if invalid else 200
        assert int(status) == expected, (command, body[:300])
        if "-o points.npy" in command:
            points = np.load(tmp_path / "points.npy")
            assert points.dtype == np.float32 and points.shape == (10_000, 2)
        elif "-o /dev/null" in command:  # -D - prints the answer's headers
            headers = body.lower()
            assert "swirl-seed: 0" in headers and "swirl-space: data" in headers and "server-timing: queue;dur=" in headers
        elif "/sample/stream" in command:
            events = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
            assert events == ["frame"] * 6 + ["done"], events
        else:
            payload = json.loads(body)
            if invalid:
                assert payload["error"].startswith(invalid.split("=")[0] + ":")
            elif "/models" in command:
                assert "name" in payload or "models" in payload
            else:
                assert "points" in payload


def test_readme_tritonclient_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "tritonclient" in block]
    exec(compile(code.replace("127.0.0.1:8000", urlsplit(live_server).netloc), "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["(2000,", "2)", "7"]


def read_points(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", skiprows=1)
    return np.asarray(json.loads(path.read_text())["points"])


def test_readme_client_examples_work(live_server: str, tmp_path: Path) -> None:
    """The swirl-client commands run verbatim (SWIRL_URL points them at the server) and do what they say."""
    commands = [c for c in shell_commands() if command_class(c) == "client"]
    assert len(commands) >= 2 and any(" sample " in c for c in commands)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # this checkout's environment, where make installs the client
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWIRL_")}, "SWIRL_URL": live_server}
    for command in commands:
        completed = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, (command, completed.stderr[-2000:])
        output = re.search(r"-o (\S+)", command)
        if output and output.group(1) != "-":
            written = tmp_path / output.group(1)
            n = int(re.search(r"-n (\d+)", command).group(1))  # type: ignore[union-attr]
            assert read_points(written).shape == (n, 2), command
        elif " models" in command or " health" in command:
            json.loads(completed.stdout)


def test_readme_httpx_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "httpx" in block]
    exec(compile(code.replace(DEFAULT_URL, live_server), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "7" and len(printed[1]) == 12


# -- every shell command in the README ------------------------------------------------------
#
# Each command of every ```sh block falls in exactly one class below, so a new command
# cannot slip into the README untested. Commands run verbatim in a fresh copy of the
# repository's tracked files (sharing this checkout's .venv), except for three stated
# reductions of cost: training steps become TRAIN_STEPS, the evaluation gets small
# --samples/--w2-samples, and `make train` (70,000 steps, minutes) is checked as a dry run.
# The commands that reproduce the few-step models ("long": a v-model, distillation) are
# checked by their options: each program's --help lists every option the README passes.

TRAIN_STEPS = "30"
ROOT = README.parent


def shell_commands() -> list[str]:
    commands = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def command_class(command: str) -> str:
    if command.startswith("curl "):
        return "curl"  # test_readme_curl_examples_work, against a real server
    if command.startswith(".venv/bin/swirl-client "):
        return "client"  # test_readme_client_examples_work, against a real server
    if re.match(r"(\w+=\S+\s+)*docker(-compose)? ", command):
        return "container"  # tests/container/run.sh (make test-container) builds and runs the image
    if command == "make test":
        return "self"  # the command that runs this test
    if "swiss-roll-v" in command or "make_few_step_figure" in command:
        return "long"  # reproduces the few-step models (hours of CPU): checked by their options, below
    if "ray" in command or command.startswith("kubectl "):
        return "long"  # a Ray cluster / Kubernetes (tests/ray runs the same entry point on a real local cluster)
    if re.match(r"(\w+=\S+\s+)*make (serve|train)$", command) or command.startswith(".venv/bin/python -m model."):
        return "local"
    return "unknown"


def test_every_readme_shell_command_is_covered() -> None:
    commands = shell_commands()
    assert len(commands) >= 10
    unknown = [c for c in commands if command_class(c) == "unknown"]
    assert not unknown, f"README commands that no test runs: {unknown}"
    for command in commands:
        assert not re.match(r"python3? ", command), f"{command!r}: plain `python` is not .venv's on a fresh clone"


def test_compose_commands_in_the_readme_are_the_ones_the_container_test_runs() -> None:
    script = (ROOT / "tests" / "container" / "run.sh").read_text()
    container = [c for c in shell_commands() if command_class(c) == "container"]
    assert any(c.startswith("docker-compose ") for c in container) and any(c.startswith("docker compose ") for c in container)
    for fragment in ("up -d", "--profile train run --rm train", "down -v"):
        assert fragment in script and any(fragment in c for c in container), fragment


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files, as a fresh clone has them, with this checkout's .venv."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    target = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def run_in(copy: Path, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWIRL_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(command, shell=True, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_training_commands_run_as_written(fresh_copy: Path) -> None:
    local = [c for c in shell_commands() if command_class(c) == "local"]
    (train,) = [c for c in local if c.startswith(".venv/bin/python -m model.train")]
    (evaluate,) = [c for c in local if c.startswith(".venv/bin/python -m model.evaluate")]
    assert "checkpoints/mine" in train and "checkpoints/mine" in evaluate
    out = re.search(r"--out (\S+)", train)
    assert out is not None
    completed = run_in(fresh_copy, re.sub(r"--steps \d+", f"--steps {TRAIN_STEPS}", train) + " --no-progress")
    assert completed.returncode == 0, completed.stderr[-2000:]
    meta = json.loads((fresh_copy / out.group(1) / "checkpoint.json").read_text())
    assert meta["training"]["steps"] == int(TRAIN_STEPS)
    completed = run_in(fresh_copy, evaluate + " --samples 300 --w2-samples 100")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads((fresh_copy / out.group(1) / "checkpoint.json").read_text())["evaluation"]["n"] == 300
    # make train: a dry run shows it retrains the shipped checkpoint in place, then evaluates, and says so
    (make_train,) = [c for c in local if c == "make train"]
    dry = run_in(fresh_copy, make_train + " --dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "--out checkpoints/swiss-roll --overwrite --evaluate" in dry.stdout and "evaluating it" in dry.stdout


def test_readme_serve_commands_run_as_written(fresh_copy: Path, tmp_path: Path) -> None:
    serves = [c for c in shell_commands() if command_class(c) == "local" and c.endswith("make serve")]
    assert serves
    if not (fresh_copy / "checkpoints" / "mine").exists():  # the training test made it; alone, make one here
        assert run_in(fresh_copy, f".venv/bin/python -m model.train --out checkpoints/mine --steps {TRAIN_STEPS} --no-progress").returncode == 0
    for command in serves:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWIRL_")}
        env.update(SWIRL_PORT=str(port), SWIRL_GRPC_PORT=str(free_port()), SWIRL_WORKERS="1", OMP_NUM_THREADS="1")
        log_path = tmp_path / f"serve-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, shell=True, cwd=fresh_copy, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 240
            while True:
                assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            expected = re.search(r"\bSWIRL_CHECKPOINT=(\S+)\s", command)
            name = Path(expected.group(1)).name if expected else "swiss-roll"
            assert httpx.get(f"{url}/model", timeout=30).json()["name"] == name
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def test_readme_long_commands_use_only_options_their_programs_have(fresh_copy: Path) -> None:
    long = [c for c in shell_commands() if command_class(c) == "long"]
    assert long
    for command in long:
        if command.startswith("kubectl apply -f "):
            assert (fresh_copy / command.split()[-1]).is_file(), command
            continue
        program = re.match(r"(?:\w+=\S+\s+)*(\.venv/bin/python (?:-m [\w.]+|\S+\.py)|make [\w-]+)", command)
        assert program is not None, command
        if program.group(1).startswith("make "):
            dry = run_in(fresh_copy, f"{program.group(1)} --dry-run")  # the target exists and what it runs parses
            assert dry.returncode == 0, (command, dry.stderr[-1000:])
            continue
        completed = run_in(fresh_copy, f"{program.group(1)} --help", timeout=120)
        listed = completed.stdout
        if completed.returncode != 0 and "No module named 'ray'" in completed.stderr:
            # the optional `ray` extra (make serve-ray installs it) is absent: read the options from the source
            module = program.group(1).split()[-1]
            listed = (fresh_copy / (module.replace(".", "/") + ".py")).read_text()
        else:
            assert completed.returncode == 0, (command, completed.stderr[-1000:])
        for flag in re.findall(r"(?<=\s)(--[\w-]+)", command):
            assert flag in listed, f"{command}: {flag} is not an option of {program.group(1)}"
