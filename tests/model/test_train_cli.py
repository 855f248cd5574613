"""`python -m model.train`: options derived from the dataclasses, safe output, threads, reproducible ids."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from model import train as train_module
from model.checkpoint import load_checkpoint
from model.cli import build_dataclass, field_comments
from model.net import NetConfig
from model.schedule import ScheduleConfig
from model.train import FLAG_RENAMES, NOT_OPTIONS, RunOptions, TrainConfig, build_parser, main

TINY = ["--steps", "60", "--batch-size", "64", "--n-train", "1000", "--warmup-steps", "5", "--hidden", "8", "--depth", "1", "--no-progress", "--device", "cpu"]


def option_paths() -> list[tuple[str, str]]:
    """(dotted field path, flag) for every training and run option."""
    pairs = [(f.name, "--" + f.name.replace("_", "-")) for f in dataclasses.fields(RunOptions)]
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("net", "schedule"):
            nested = NetConfig if f.name == "net" else ScheduleConfig
            for g in dataclasses.fields(nested):
                path = f"{f.name}.{g.name}"
                if path not in NOT_OPTIONS:
                    pairs.append((path, "--" + FLAG_RENAMES.get(path, g.name.replace("_", "-"))))
        else:
            pairs.append((f.name, "--" + f.name.replace("_", "-")))
    return pairs


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_field_is_an_option_with_its_comment_and_default_in_the_help() -> None:
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for path, flag in option_paths():
        action = actions[path]
        assert flag in action.option_strings, (path, action.option_strings)
        assert action.help and "default: " in action.help, path
        assert len(action.help.split("default: ")[0].strip(" (;")) > 5, f"{path} has no help text"
    assert "default: 70000" in actions["steps"].help and "optimiser steps" in actions["steps"].help
    assert actions["optimizer"].choices == ("adam", "adamw")
    assert actions["schedule.kind"].choices == ("linear", "cosine")
    assert actions["net.activation"].choices == ("silu", "relu", "gelu")
    assert "net.data_dim" not in actions
    text = " ".join(parser.format_help().split())  # renders (a stray % in a comment would raise here)
    assert "~10% of a step" in text and "(default: 0.9995)" in text


def test_comments_are_read_from_the_dataclass_source() -> None:
    comments = field_comments(TrainConfig)
    assert comments["ema_decay"] == "EMA of the weights; the checkpoint stores the EMA"
    assert set(comments) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_parsed_defaults_rebuild_the_default_configs() -> None:
    args = build_parser().parse_args([])
    assert build_dataclass(TrainConfig, args) == TrainConfig()
    assert build_dataclass(RunOptions, args) == RunOptions()
    args = build_parser().parse_args(["--hidden", "32", "--schedule", "cosine", "--lr", "0.01", "--out", "x", "--no-progress"])
    config = build_dataclass(TrainConfig, args)
    assert config.net.hidden == 32 and config.schedule.kind == "cosine" and config.lr == 0.01
    assert build_dataclass(RunOptions, args) == RunOptions(out=Path("x"), progress=False)


@pytest.mark.parametrize("argv", [["--optimizer", "sgd"], ["--schedule", "quadratic"], ["--steps", "many"], ["--data-dim", "3"]])
def test_bad_options_are_rejected_by_the_parser(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_default_output_is_a_fresh_folder_never_an_existing_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_threads: None) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "checkpoints" / "swiss-roll"
    shipped.mkdir(parents=True)
    (shipped / "checkpoint.json").write_text("{}")
    assert main(TINY) == 0
    assert main(TINY) == 0
    runs = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(runs) == 3 and runs[-1] == "swiss-roll" and all(name.startswith("run-") for name in runs[:2])
    assert (shipped / "checkpoint.json").read_text() == "{}"


def test_an_existing_checkpoint_is_replaced_only_with_overwrite(tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_threads: None) -> None:
    target = tmp_path / "ck"
    target.mkdir()
    (target / "checkpoint.json").write_text("{}")
    assert main([*TINY, "--out", str(target)]) == 2
    assert "--overwrite" in caplog.text and (target / "checkpoint.json").read_text() == "{}"
    assert main([*TINY, "--out", str(target), "--overwrite"]) == 0
    assert json.loads((target / "checkpoint.json").read_text())["training"]["steps"] == 60


def test_threads_option_sets_torch_threads_and_is_recorded(tmp_path: Path, restore_threads: None) -> None:
    assert RunOptions().threads == train_module.DEFAULT_THREADS
    assert main([*TINY, "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert json.loads((tmp_path / "a" / "checkpoint.json").read_text())["training"]["threads"] == 1
    assert main([*TINY, "--out", str(tmp_path / "b"), "--threads", "-1"]) == 2


def test_training_twice_gives_the_same_model_id_at_any_thread_count(tmp_path: Path, restore_threads: None) -> None:
    # The failure: the same seeded run gave two different ids because the id hashed the
    # file, whose header order varies. Train three times (1, 1 and 2 threads) and compare.
    ids = []
    for name, threads in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main([*TINY, "--out", str(tmp_path / name), "--threads", threads]) == 0
        ids.append(load_checkpoint(tmp_path / name).sha256)
        assert json.loads((tmp_path / name / "checkpoint.json").read_text())["weights_sha256"] == ids[-1]
    assert len(set(ids)) == 1, ids
    other_seed = tmp_path / "d"
    assert main([*TINY, "--out", str(other_seed), "--seed", "1"]) == 0
    assert load_checkpoint(other_seed).sha256 != ids[0]


def train_in_fresh_process(out: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """`python -m model.train` as `make train` runs it (a fresh process), short and seeded; the model id."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "model.train", "--out", str(out), "--steps", "300", "--batch-size", "256", "--no-progress", "--device", "cpu", *extra]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return str(json.loads((out / "checkpoint.json").read_text())["weights_sha256"])


def test_a_seeded_training_in_fresh_processes_gives_one_model_id(tmp_path: Path) -> None:
    """What docs/quality.md promises: the same seeded training, on the same machine and torch
    build, gives the same id, run after run (each a fresh process) and at one or two threads."""
    first = train_in_fresh_process(tmp_path / "a")
    assert train_in_fresh_process(tmp_path / "b") == first
    assert train_in_fresh_process(tmp_path / "c", "--threads", "2") == first


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="this CPU already runs ATen's scalar kernels")
def test_the_model_id_depends_on_the_cpu_kernels(tmp_path: Path) -> None:
    """What docs/quality.md warns of: the id is not portable across kernels. ATen's scalar kernels
    (ATEN_CPU_CAPABILITY=default) round differently from its vector ones, and so would another
    CPU's: the same seeded training then gives another id."""
    vector = train_in_fresh_process(tmp_path / "vector")
    scalar = train_in_fresh_process(tmp_path / "scalar", env={"ATEN_CPU_CAPABILITY": "default"})
    assert scalar != vector
