"""Trajectory distillation on a tiny teacher: the loss falls and the student follows the teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec
from model.distill import DistillConfig, distill, landing_loss, student_path, teacher_spec
from model.engine import sample
from model.errors import InvalidParameter
from model.net import EpsilonMLP, NetConfig
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
        distill(students[0], DistillConfig(steps=(1,), trajectories=10, batch_size=10), tmp_path / "x", torch.device("cpu"), progress=False)


def test_the_command_line_writes_one_checkpoint_per_step_count(teacher_dir: Path, tmp_path: Path) -> None:
    from model.distill import main

    out = tmp_path / "cli-student"
    argv = [str(teacher_dir), "--steps", "1,2", "--trajectories", "300", "--train-steps", "1=20,2=20", "--batch-size", "64"]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1", "--device", "cpu"]) == 0
    assert load_checkpoint(tmp_path / "cli-student-1").student_grids == {1: [50]}
    assert load_checkpoint(tmp_path / "cli-student-2").student_grids == {2: [50, 12]}
    assert main([str(teacher_dir), "--steps", "0", "--out", str(out), "--no-progress"]) == 2


def test_landing_loss_is_the_ddim_landing_error_row_by_row() -> None:
    """Rows grouped by grid point with one broadcast τ(t) per group: the same loss (to float32
    rounding; the reference sums in float64) as each row's own forward pass, ‖a_k x + b_k f(x, τ_k) − target‖² averaged over every row."""
    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=16, depth=2, time_embedding_dim=8, prediction="v"), timesteps=50)
    grid = torch.tensor([50, 12])
    starts = [torch.randn(7, 2), torch.randn(5, 2)]
    targets = [torch.randn(7, 2), torch.randn(5, 2)]
    a, b = [0.0, 0.9], [-1.0, -0.3]
    expected = torch.zeros((), dtype=torch.float64)
    for k in range(2):
        for x, y in zip(starts[k], targets[k]):
            out = net(x[None], grid[k : k + 1])[0]
            expected += ((a[k] * x.double() + b[k] * out.double() - y.double()) ** 2).sum()
    expected /= 12
    got = landing_loss(net, starts, grid, targets, a, b)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    got.backward()  # differentiable through the grouped forward
    assert all(p.grad is not None for p in net.layers.parameters())


def test_distill_config_rejects_a_batch_larger_than_the_trajectories() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        DistillConfig(trajectories=100, batch_size=1024)


def test_students_trained_side_by_side_equal_students_trained_in_turn(teacher_dir: Path, tmp_path: Path) -> None:
    """Two worker processes or one after the other, one thread each: the same weights, bit for bit."""
    config = DistillConfig(steps=(1, 2), trajectories=600, train_steps=((1, 30), (2, 30)), batch_size=64, warmup_steps=5)
    apart = distill(teacher_dir, config, tmp_path / "apart", torch.device("cpu"), progress=False, workers=2, threads=1)
    alone = distill(teacher_dir, config, tmp_path / "alone", torch.device("cpu"), progress=False, workers=1, threads=1)
    assert [p.name for p in apart] == ["apart-2", "apart-1"]  # the costlier student first
    for a, b in zip(apart, alone):
        net_a, net_b = load_checkpoint(a).net, load_checkpoint(b).net
        for (name, x), (_, y) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
            assert torch.equal(x, y), name
        summary = json.loads((a / "checkpoint.json").read_text())["training"]
        assert summary["threads"] == 1 and summary["config"]["batch_size"] == 64
