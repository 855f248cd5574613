"""clients/python builds as its own package: swirl_client, the swirl-client command, and no
dependency but httpx and numpy (declared, and imported)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "python"


def test_the_wheel_holds_the_package_its_command_and_only_httpx_and_numpy(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building leaves build/ behind, which a later build would reuse
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("swirl_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {n for n in names if n.startswith("swirl_client/")} >= {"swirl_client/__init__.py", "swirl_client/cli.py", "swirl_client/py.typed"}
    assert not any(n.startswith(("app/", "model/", "tests/")) for n in names)
    assert sorted(metadata.get_all("Requires-Dist") or []) == ["httpx>=0.27", "numpy>=1.26"]
    assert "swirl-client = swirl_client.cli:main" in entry_points


def test_the_package_imports_only_the_standard_library_httpx_and_numpy() -> None:
    allowed = {"httpx", "numpy", "swirl_client", "__future__"} | set(sys.stdlib_module_names)
    for path in (PACKAGE / "swirl_client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"


def test_make_installs_the_client_into_the_environment() -> None:
    script = Path(sysconfig.get_path("scripts")) / "swirl-client"
    assert script.is_file(), "make installs clients/python (pip install -e clients/python): run make"
    assert "clients/python/pyproject.toml" in (ROOT / "Makefile").read_text()
