"""The README's API examples run as written against a real server (curl and httpx)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

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
        expected = 422 if "n=0" in command else 200
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
            if expected == 200:
                assert "points" in payload
            else:
                assert payload["error"].startswith("n:")


def test_readme_tritonclient_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "tritonclient" in block]
    exec(compile(code.replace("127.0.0.1:8000", urlsplit(live_server).netloc), "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["(2000,", "2)", "7"]


def test_readme_httpx_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "httpx" in block]
    exec(compile(code.replace(DEFAULT_URL, live_server), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "7" and len(printed[1]) == 12
