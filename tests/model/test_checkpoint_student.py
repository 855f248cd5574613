"""Checkpoints of v-models and distilled students round-trip with everything a plan needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.data import Normalisation
from model.diffusion import SamplerSpec, make_plan
from model.errors import InvalidParameter
from model.net import EpsilonMLP, NetConfig
from model.schedule import Schedule, ScheduleConfig

NORM = Normalisation(noise=0.5, mean=(0.1, -0.2), scale=7.5)
ZERO_SNR = ScheduleConfig(zero_terminal_snr=True)
STUDENT = {"method": "trajectory", "teacher": {"id": "ab" * 32, "name": "teacher"}, "grids": {"2": [50, 12], "4": [50, 28, 12, 3]}}


def write(path: Path, student: dict[str, object] | None = None) -> EpsilonMLP:
    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=16, depth=2, time_embedding_dim=8, prediction="v"), 50)
    save_checkpoint(path, net, ZERO_SNR, NORM, training={"steps": 0}, extra={"student": student} if student else None)
    return net


def test_v_model_round_trip_keeps_prediction_and_zero_terminal_snr(tmp_path: Path) -> None:
    write(tmp_path / "v")
    loaded = load_checkpoint(tmp_path / "v")
    assert loaded.prediction == "v" and loaded.schedule.zero_terminal_snr and loaded.schedule.alpha_bar_final == 0.0
    assert loaded.student is None and loaded.student_grids == {}
    meta = json.loads((tmp_path / "v" / "checkpoint.json").read_text())
    assert meta["net"]["prediction"] == "v" and meta["schedule"]["zero_terminal_snr"] is True
    # the checkpoint's plan folds the v-conversion in: not the ε-plan of the same schedule
    spec = SamplerSpec("ddim", steps=10)
    v_plan = loaded.plan(spec)
    assert v_plan == make_plan(Schedule.from_config(ZERO_SNR), spec, prediction="v")
    with pytest.raises(InvalidParameter, match="distilled student"):
        loaded.plan(SamplerSpec("student", steps=2))


def test_student_round_trip_serves_its_grids(tmp_path: Path) -> None:
    write(tmp_path / "s", STUDENT)
    loaded = load_checkpoint(tmp_path / "s")
    assert loaded.student == STUDENT
    assert loaded.student_grids == {2: [50, 12], 4: [50, 28, 12, 3]}
    assert loaded.plan(SamplerSpec("student", steps=4)).timesteps == [50, 28, 12, 3]
    with pytest.raises(InvalidParameter, match="2, 4; got 3"):
        loaded.plan(SamplerSpec("student", steps=3))


@pytest.mark.parametrize(
    "grids",
    [{}, {"2": [50]}, {"2": [40, 12]}, {"2": [50, 50]}, {"2": [50, 0]}, {"2": [50, 12.5]}, {"x": [50]}],
    ids=["empty", "short", "not-from-T", "not-falling", "reaches-0", "float", "bad-key"],
)
def test_malformed_student_grids_fail_to_load_clearly(tmp_path: Path, grids: dict[str, object]) -> None:
    write(tmp_path / "s", {**STUDENT, "grids": grids})
    with pytest.raises(CheckpointError, match="invalid metadata"):
        load_checkpoint(tmp_path / "s")


def test_shipped_student_checkpoints_name_the_shipped_teacher() -> None:
    root = Path(__file__).resolve().parents[2] / "checkpoints"
    teacher = load_checkpoint(root / "swiss-roll-v")
    assert teacher.prediction == "v" and teacher.schedule.zero_terminal_snr
    for steps in (1, 2, 4):
        student = load_checkpoint(root / f"swiss-roll-v-student-{steps}")
        assert student.student is not None and student.student["teacher"]["id"] == teacher.sha256
        assert list(student.student_grids) == [steps] and student.student_grids[steps][0] == 50
        assert f"student-{steps}" in student.meta["evaluation"]["samplers"]
