"""The README's API examples run as written against a real server (curl and httpx)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

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
def test_readme_curl_examples_work(live_server: str) -> None:
    for command in curl_commands():
        completed = subprocess.run(
            command.replace(DEFAULT_URL, live_server) + " --silent --show-error --write-out '\\n%{http_code}'",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        body, status = completed.stdout.rsplit("\n", 1)
        invalid = "n=0" if "n=0" in command else "model=nope" if "model=nope" in command else None
        expected = 422 if invalid else 200
        assert int(status) == expected, (command, body[:300])
        payload = json.loads(body)
        if invalid:
            assert payload["error"].startswith(invalid.split("=")[0] + ":")
        elif "/models" in command:
            assert "name" in payload or "models" in payload
        else:
            assert "points" in payload


def test_readme_httpx_example_works(live_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [block for block in blocks("python") if "httpx" in block]
    exec(compile(code.replace(DEFAULT_URL, live_server), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "7" and len(printed[1]) == 12
