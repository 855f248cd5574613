"""q(x_t | x_0) in closed form: moments against the schedule, with fixed seeds."""

from __future__ import annotations

import math

import pytest
import torch

from model.diffusion import q_sample
from model.schedule import Schedule, ScheduleConfig


@pytest.mark.parametrize("t", [0, 1, 10, 25, 50])
def test_q_sample_moments_match_closed_form(t: int) -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    tables = schedule.to("cpu")
    g = torch.Generator().manual_seed(t)
    n = 200_000
    x0 = torch.tensor([[1.5, -0.5]]).expand(n, 2)
    noise = torch.randn((n, 2), generator=g)
    xt = q_sample(tables, x0, torch.full((n,), t), noise).double()
    ab = schedule.alpha_bar(t)
    expected_mean = torch.tensor([1.5, -0.5], dtype=torch.float64) * math.sqrt(ab)
    torch.testing.assert_close(xt.mean(0), expected_mean, atol=4 * math.sqrt((1 - ab) / n) + 1e-6, rtol=0)
    if t == 0:
        assert torch.equal(xt, x0.double())
    else:
        torch.testing.assert_close(xt.var(0), torch.full((2,), 1 - ab, dtype=torch.float64), rtol=0.02, atol=0)


def test_q_sample_uses_a_different_t_per_row() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    tables = schedule.to("cpu")
    x0 = torch.ones(3, 2)
    noise = torch.zeros(3, 2)
    xt = q_sample(tables, x0, torch.tensor([0, 25, 50]), noise)
    expected = torch.tensor([math.sqrt(schedule.alpha_bar(t)) for t in (0, 25, 50)])
    torch.testing.assert_close(xt[:, 0], expected.float())
