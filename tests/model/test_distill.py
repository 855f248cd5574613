"""Trajectory distillation on a tiny teacher: the loss falls and the student follows the teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec
from model.distill import DistillConfig, distill, student_path, teacher_spec
from model.engine import sample
from model.errors import InvalidParameter
from model.net import NetConfig
from model.schedule import ScheduleConfig
from model.train import TrainConfig, train


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(
        steps=300,
        batch_size=256,
        warmup_steps=20,
        n_train=4000,
        net=NetConfig(hidden=24, depth=2, time_embedding_dim=8, prediction="v"),
        schedule=ScheduleConfig(zero_terminal_snr=True),
    )
    torch.set_num_threads(1)
    result = train(config, torch.device("cpu"), progress=False)
    path = tmp_path_factory.mktemp("teacher") / "tiny-v"
    save_checkpoint(path, result.net, config.schedule, result.normalisation, result.summary)
    return path


@pytest.fixture(scope="module")
def students(teacher_dir: Path) -> list[Path]:
    config = DistillConfig(steps=(1, 2), trajectories=4000, train_steps=((1, 400), (2, 400)), batch_size=256, lr=1e-3, warmup_steps=20, ema_decay=0.9)
    return distill(teacher_dir, config, teacher_dir.with_name("tiny-v-student"), torch.device("cpu"), progress=False)


def run(path: Path, spec: SamplerSpec, x_T: torch.Tensor) -> torch.Tensor:
    checkpoint = load_checkpoint(path)
    return sample(NetDenoiser(checkpoint.net, "cpu"), checkpoint.plan(spec), len(x_T), x_T=x_T).x0


def test_distillation_lowers_the_landing_error_and_writes_self_describing_students(teacher_dir: Path, students: list[Path]) -> None:
    assert students == [student_path(teacher_dir.with_name("tiny-v-student"), s) for s in (2, 1)]
    teacher = load_checkpoint(teacher_dir)
    for path, steps in zip(students, (2, 1)):
        student = load_checkpoint(path)
        meta = json.loads((path / "checkpoint.json").read_text())
        assert meta["student"]["teacher"]["id"] == teacher.sha256
        assert meta["student"]["method"] == "trajectory"
        assert student.student_grids == {steps: {1: [50], 2: [50, 12]}[steps]}
        assert student.prediction == "v" and student.schedule.zero_terminal_snr
        summary = meta["training"]
        assert summary["final_grid_error"] < 0.5 * summary["initial_grid_error"]
        curve = [loss for _, loss in summary["loss_curve"]]
        assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5


def test_student_lands_on_the_teachers_trajectory_on_its_grid(teacher_dir: Path, students: list[Path]) -> None:
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(99))  # rows never seen in training
    teacher_end = run(teacher_dir, teacher_spec(50), x_T)
    for path, steps in zip(students, (2, 1)):
        distilled = run(path, SamplerSpec("student", steps=steps), x_T)
        undistilled = run(teacher_dir, SamplerSpec("ddim", steps=steps, spacing="quadratic"), x_T)
        student_error = (distilled - teacher_end).square().sum(1).mean()
        teacher_error = (undistilled - teacher_end).square().sum(1).mean()
        assert student_error < 0.25 * teacher_error, (steps, float(student_error), float(teacher_error))


def test_a_student_refuses_other_step_counts(students: list[Path]) -> None:
    student = load_checkpoint(students[0])
    with pytest.raises(InvalidParameter, match="trained step counts: 2; got 4") as info:
        student.plan(SamplerSpec("student", steps=4))
    assert info.value.field == "steps"


def test_a_student_cannot_be_distilled_again(students: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="itself a student"):
        distill(students[0], DistillConfig(steps=(1,), trajectories=10), tmp_path / "x", torch.device("cpu"), progress=False)


def test_the_command_line_writes_one_checkpoint_per_step_count(teacher_dir: Path, tmp_path: Path) -> None:
    from model.distill import main

    out = tmp_path / "cli-student"
    argv = [str(teacher_dir), "--steps", "1,2", "--trajectories", "300", "--train-steps", "1=20,2=20", "--batch-size", "64"]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1", "--device", "cpu"]) == 0
    assert load_checkpoint(tmp_path / "cli-student-1").student_grids == {1: [50]}
    assert load_checkpoint(tmp_path / "cli-student-2").student_grids == {2: [50, 12]}
    assert main([str(teacher_dir), "--steps", "0", "--out", str(out), "--no-progress"]) == 2
