"""The README's and docs/*.md's commands run as written: curl and the Python examples against a
real server, training, evaluation and `make serve` in a fresh copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
PAGES = [README, *sorted((README.parent / "docs").glob("*.md"))]  # the front door and the pages it links
DEFAULT_URL = "http://127.0.0.1:8000"
SHIPPED_MODELS = sorted(p.parent.name for p in (README.parent / "checkpoints").glob("*/checkpoint.json"))

pytestmark = pytest.mark.integration


def blocks(language: str, pages: list[Path] = PAGES) -> list[str]:
    return [block for page in pages for block in re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)]


def curl_commands() -> list[tuple[str, int, str | None]]:
    """(command, expected status, documented error) for every curl line of a block that talks to
    the default URL; a comment that starts with a status code (``# 422: ...``) names the status,
    else 200, and the ``"error"`` text it shows is the one the server must answer."""
    text = "\n".join(block for block in blocks("sh") if DEFAULT_URL in block)
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        command, _, comment = line.partition(" #")
        if command.strip().startswith("curl "):
            status = re.match(r"\s*(\d{3})\b", comment)
            error = re.search(r'"error": "([^"]*)"', comment)
            found.append((command.strip(), int(status.group(1)) if status else 200, error.group(1) if error else None))
    return list(dict.fromkeys(found))


def test_readme_has_curl_and_httpx_examples() -> None:
    readme_curls = [c for c in shell_commands([README]) if c.startswith("curl ")]
    assert len(readme_curls) >= 5
    assert any("httpx" in block for block in blocks("python", [README]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work(live_server: str, tmp_path: Path) -> None:
    for command, expected, documented_error in curl_commands():
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
            if expected == 422:  # the error names the field the command got wrong
                field = re.search(r"[?&](\w+)=(0|nope)\b", command)
                assert field is not None and payload["error"].startswith(field.group(1) + ":"), (command, payload)
                assert documented_error is None or payload["error"] == documented_error, (command, payload["error"])
            elif command.rstrip("'").endswith("/models"):  # what the README says: the six shipped models
                assert sorted(m["name"] for m in payload["models"]) == SHIPPED_MODELS
                assert [m["name"] for m in payload["models"] if m["default"]] == ["swiss-roll"]
            elif "/models/" in command and "/v2/" not in command:
                assert "name" in payload
            elif expected == 200 and "/sample" in command:
                assert "points" in payload
                model = re.search(r'[?&]model=([\w.-]+)|"model": "([\w.-]+)"', command)
                assert payload["model_name"] == (next(filter(None, model.groups())) if model else "swiss-roll")


def run_example(code: str, live_server: str) -> None:
    code = code.replace(DEFAULT_URL, live_server).replace("127.0.0.1:8000", urlsplit(live_server).netloc)
    exec(compile(code, "example", "exec"), {})


def test_readme_tritonclient_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "tritonclient.http" in block]
    run_example(code, live_server)
    assert capsys.readouterr().out.split() == ["(2000,", "2)", "7"]


def test_docs_grpc_tritonclient_example_works(live_server: str, live_grpc: str) -> None:
    """docs/clients.md's gRPC example runs against the server's gRPC port and gives /sample's points."""
    (code,) = [block for block in blocks("python") if "tritonclient.grpc" in block]
    namespace: dict[str, object] = {}
    exec(compile(code.replace("127.0.0.1:8001", live_grpc), "example", "exec"), namespace)
    expected = httpx.get(f"{live_server}/sample", params={"n": 2000, "seed": 7, "sampler": "ddim", "steps": 10}, timeout=60).json()["points"]
    np.testing.assert_allclose(namespace["points"], np.asarray(expected, dtype=np.float32), atol=1e-5)


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
    (code,) = [block for block in blocks("python", [README]) if "httpx" in block]
    run_example(code, live_server)
    printed = capsys.readouterr().out.split()
    assert printed[0] == "7" and len(printed[1]) == 12


def test_every_python_example_that_talks_to_the_server_runs(live_server: str) -> None:
    examples = [block for block in blocks("python") if "127.0.0.1:8000" in block]
    assert len(examples) >= 2
    for code in examples:
        run_example(code, live_server)


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


def shell_commands(pages: list[Path] = PAGES) -> list[str]:
    """Every command of every ```sh block, once (a command shown on two pages runs once)."""
    commands = []
    for block in blocks("sh", pages):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return list(dict.fromkeys(commands))


def command_class(command: str) -> str:
    if command.startswith("curl "):
        return "curl"  # test_readme_curl_examples_work, against a real server
    if command.startswith(".venv/bin/swirl-client "):
        return "client"  # test_readme_client_examples_work, against a real server
    if re.match(r"(\w+=\S+\s+)*docker(-compose)? ", command):
        return "container"  # tests/container/run.sh (make test-container) builds and runs the image
    if command == "make test":
        return "self"  # the command that runs this test
    if "swiss-roll-v" in command or "make_few_step_figure" in command or "swiss-roll-guided" in command:
        return "long"  # reproduces the few-step or the guided models (minutes to hours of CPU): checked by their options, below
    if "ray" in command or command.startswith("kubectl "):
        return "long"  # a Ray cluster / Kubernetes (tests/ray runs the same entry point on a real local cluster)
    if re.match(r"(\w+=\S+\s+)*make (serve|train)$", command) or command.startswith(".venv/bin/python -m model."):
        return "local"
    if command.startswith(".venv/bin/python scripts/generate_grpc.py"):
        return "generate"  # test_docs_generate_command_reproduces_the_shipped_module
    if command.startswith(".venv/bin/pip install ./clients/python"):
        return "package"  # test_docs_client_install_command_installs_the_command_line
    return "unknown"


def test_every_readme_shell_command_is_covered() -> None:
    commands = shell_commands()
    assert len(commands) >= 10
    unknown = [c for c in commands if command_class(c) == "unknown"]
    assert not unknown, f"commands in the README or docs/ that no test runs: {unknown}"
    for command in commands:
        assert not re.match(r"python3? ", command), f"{command!r}: plain `python` is not .venv's on a fresh clone"


def test_docs_generate_command_reproduces_the_shipped_module(fresh_copy: Path) -> None:
    """The documented regeneration of the gRPC descriptor, run verbatim in a fresh copy, rewrites
    the module to exactly the bytes the repository ships."""
    (command,) = [c for c in shell_commands() if command_class(c) == "generate"]
    module = Path("app/wire/grpc_predict_v2_descriptor.py")
    (fresh_copy / module).write_text("stale\n")
    completed = run_in(fresh_copy, command)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (fresh_copy / module).read_bytes() == (ROOT / module).read_bytes()


def test_docs_client_install_command_installs_the_command_line(tmp_path: Path) -> None:
    """The documented install of the client package, run verbatim in its own environment (never the
    shared .venv), gives a working swirl-client."""
    (command,) = [c for c in shell_commands() if command_class(c) == "package"]
    shutil.copytree(ROOT / "clients" / "python", tmp_path / "clients" / "python", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / ".venv")], check=True, timeout=120)
    # httpx, numpy and setuptools from this checkout's environment (a .pth path), so the install needs no index
    (site,) = (tmp_path / ".venv" / "lib").glob("python3*/site-packages")
    (site / "shared_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for bundled in [*site.glob("setuptools*"), *site.glob("_distutils_hack"), *site.glob("distutils-precedence.pth")]:  # venv's old copy
        shutil.rmtree(bundled) if bundled.is_dir() else bundled.unlink()
    completed = subprocess.run(command + " --quiet --no-deps --no-build-isolation", shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    installed = subprocess.run([str(tmp_path / ".venv" / "bin" / "swirl-client"), "--help"], capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0 and "sample" in installed.stdout, installed.stderr[-2000:]


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
            served = sorted(m["name"] for m in httpx.get(f"{url}/models", timeout=30).json()["models"])
            # plain make serve: every model under the copy's checkpoints/ (the shipped six, and `mine` once trained)
            in_folder = sorted(p.parent.name for p in (fresh_copy / "checkpoints").glob("*/checkpoint.json"))
            assert served == ([name] if expected else in_folder) and set(SHIPPED_MODELS) <= set(in_folder), (command, served)
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
