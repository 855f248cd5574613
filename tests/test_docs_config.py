"""docs/configuration.md documents every setting of app/config.py, with its default, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic.fields import FieldInfo

from app.config import Settings, default_checkpoints

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def documented() -> dict[str, str]:
    """SWIRL_NAME → default cell of the table under "## Settings"."""
    section = PAGE.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(SWIRL_[A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.M)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a setting is documented twice"
    return {name: cell.strip().strip("`") for name, cell in rows}


def shown(name: str, field: FieldInfo) -> str:
    """How the page writes a field's default."""
    default = field.get_default(call_default_factory=True)
    if name == "checkpoint":  # an absolute path beside the package: the page shows the repository-relative part
        assert default == default_checkpoints() / "swiss-roll"
        return "checkpoints/swiss-roll"
    if default is None:
        return "unset"
    if default == "" and isinstance(default, str):
        return "empty"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def test_every_setting_is_documented_with_its_default() -> None:
    table = documented()
    fields = {f"SWIRL_{name.upper()}": (name, field) for name, field in Settings.model_fields.items()}
    assert sorted(table) == sorted(fields), f"undocumented: {sorted(set(fields) - set(table))}; documented but not settings: {sorted(set(table) - set(fields))}"
    for variable, (name, field) in fields.items():
        assert table[variable] == shown(name, field), f"{variable}: the page says {table[variable]!r}"


def test_the_page_names_each_setting_by_its_environment_variable() -> None:
    """The env prefix is what the page assumes (SWIRL_ + the field name in capitals)."""
    assert Settings.model_config.get("env_prefix") == "SWIRL_"
    assert Settings.model_config.get("case_sensitive", False) is False
