"""The arc-position condition: the data's u and its true conditional, the conditioned network,
its checkpoint record, training with the null condition, and the guided denoiser against float64."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.data import Normalisation, conditional_swiss_roll, roll_centre, swiss_roll, swiss_roll_with_position
from model.denoiser import Conditions, NetDenoiser
from model.net import NULL_CONDITION, EpsilonMLP, NetConfig
from model.schedule import Schedule, ScheduleConfig
from model.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
NORM = Normalisation(noise=0.5, mean=(0.1, -0.2), scale=7.5)
GUIDED = NetConfig(hidden=16, depth=2, time_embedding_dim=8, condition="arc_position", condition_embedding_dim=8)


def tiny_guided_net(seed: int = 0) -> EpsilonMLP:
    torch.manual_seed(seed)
    net = EpsilonMLP(GUIDED, 50)
    with torch.no_grad():  # a trained ∅ is not zero: make it count in every comparison
        net.null_condition.normal_()
    return net.eval()


# -- data ---------------------------------------------------------------------------------


def test_u_comes_with_the_same_points_and_locates_them_on_the_roll() -> None:
    points, u = swiss_roll_with_position(20_000, seed=4)
    np.testing.assert_array_equal(points, swiss_roll(20_000, seed=4))
    assert u.shape == (20_000,) and u.min() >= 0.0 and u.max() <= 1.0
    assert abs(u.mean() - 0.5) < 0.01  # t is uniform on [1.5π, 4.5π]
    exact, u_exact = swiss_roll_with_position(1000, noise=0.0, seed=4)
    t = 1.5 * np.pi + 3 * np.pi * u_exact  # independent float64: c(t) = (t cos t, t sin t)
    np.testing.assert_allclose(exact, np.stack([t * np.cos(t), t * np.sin(t)], 1), atol=1e-12)
    residual = points - roll_centre(u)  # (x, z) | u ~ N(c(t(u)), 0.5² I)
    np.testing.assert_allclose(residual.mean(0), 0.0, atol=0.015)
    np.testing.assert_allclose(residual.std(0), 0.5, rtol=0.02)


def test_true_conditional_draws_a_round_blob_at_c_t_u() -> None:
    draws = conditional_swiss_roll(0.3, 40_000, seed=1)
    t = 1.5 * np.pi + 0.9 * np.pi
    np.testing.assert_allclose(draws.mean(0), [t * np.cos(t), t * np.sin(t)], atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), 0.25 * np.eye(2), atol=0.01)
    per_point = conditional_swiss_roll(np.array([0.0, 1.0, 0.5]), seed=2)
    assert per_point.shape == (3, 2)
    np.testing.assert_array_equal(conditional_swiss_roll(0.3, 10, seed=1), conditional_swiss_roll(0.3, 10, seed=1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conditional_swiss_roll(1.2, 5)
    with pytest.raises(ValueError, match="does not match"):
        conditional_swiss_roll(np.array([0.1, 0.2]), 3)


# -- network ------------------------------------------------------------------------------


def test_an_unconditional_config_records_what_it_did_before_conditions_existed() -> None:
    assert set(NetConfig().to_dict()) == {"hidden", "depth", "time_embedding_dim", "activation", "data_dim", "prediction"}
    assert NetConfig.from_dict(GUIDED.to_dict()) == GUIDED
    assert not hasattr(EpsilonMLP(NetConfig(), 50), "condition_mlp")
    with pytest.raises(ValueError, match="Unknown condition"):
        NetConfig(condition="colour")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no condition input"):
        EpsilonMLP(NetConfig(), 50)(torch.zeros(2, 2), torch.ones(2, dtype=torch.long), torch.zeros(2))


def test_the_null_condition_is_a_learned_bias_and_nan_rows_get_it() -> None:
    net = tiny_guided_net()
    assert any(name == "null_condition" for name, _ in net.named_parameters())
    x, t = torch.randn(6, 2), torch.tensor([1, 5, 9, 20, 35, 50])
    u = torch.tensor([0.1, NULL_CONDITION, 0.5, NULL_CONDITION, 0.9, 0.0])
    with torch.no_grad():
        mixed, null, cond = net(x, t, u), net(x, t), net(x, t, torch.nan_to_num(u, nan=0.3))
    nan_rows = torch.isnan(u)
    torch.testing.assert_close(mixed[nan_rows], null[nan_rows], rtol=0, atol=0)
    torch.testing.assert_close(mixed[~nan_rows], cond[~nan_rows], rtol=0, atol=0)
    assert not torch.allclose(null, cond)


# -- checkpoint ---------------------------------------------------------------------------


def test_a_guided_checkpoint_records_its_condition_and_loads_it(tmp_path: Path) -> None:
    net = tiny_guided_net()
    record = {"kind": "arc_position", "range": [0.0, 1.0], "null_probability": 0.1}
    save_checkpoint(tmp_path / "g", net, ScheduleConfig(), NORM, training={"steps": 0}, extra={"condition": record})
    loaded = load_checkpoint(tmp_path / "g")
    assert loaded.condition == record and loaded.net_config == GUIDED
    meta = json.loads((tmp_path / "g" / "checkpoint.json").read_text())
    del meta["condition"]
    (tmp_path / "g" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="condition must be an object"):
        load_checkpoint(tmp_path / "g")


@pytest.mark.parametrize("name", ["swiss-roll", "swiss-roll-v", "swiss-roll-v-student-4"])
def test_shipped_unconditional_checkpoints_load_unchanged_with_their_ids(name: str) -> None:
    meta = json.loads((ROOT / "checkpoints" / name / "checkpoint.json").read_text())
    loaded = load_checkpoint(ROOT / "checkpoints" / name)
    assert loaded.sha256 == meta["weights_sha256"]
    assert loaded.condition is None and not loaded.net_config.conditioned


# -- training -----------------------------------------------------------------------------


def test_training_a_conditioned_net_learns_both_u_and_the_null_condition() -> None:
    config = TrainConfig(steps=400, batch_size=256, n_train=4000, warmup_steps=20, ema_decay=0.9, net=GUIDED, seed=3)
    result = train(config, torch.device("cpu"), progress=False)
    assert result.summary["config"]["condition_dropout"] == 0.1
    net = result.net
    # the conditioned loss is far below the unconditional one: u says where on the roll x_0 is
    points, u = swiss_roll_with_position(3000, seed=9)
    x0 = torch.tensor(result.normalisation.normalise(points), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    t = torch.full((3000,), 25)
    schedule = Schedule.from_config(config.schedule)
    a, s = schedule.alpha(25), schedule.sigma(25)
    eps = torch.randn(x0.shape, generator=generator)
    x_t = a * x0 + s * eps
    with torch.no_grad():
        loss_u = float(((net(x_t, t, torch.tensor(u, dtype=torch.float32)) - eps) ** 2).mean())
        loss_null = float(((net(x_t, t) - eps) ** 2).mean())
    assert loss_u < 0.5 * loss_null  # measured 0.27 against 0.95
    with pytest.raises(ValueError, match="condition_dropout"):
        TrainConfig(condition_dropout=0.0)


# -- the guided denoiser ------------------------------------------------------------------


@pytest.mark.parametrize("t", [7, "per-row"])
def test_net_denoiser_guidance_matches_a_float64_forward(t: object) -> None:
    net = tiny_guided_net(1)
    denoiser = NetDenoiser(net, "cpu", chunk_rows=5)  # chunks cut through the pairs
    x = torch.randn(12, 2)
    steps = 7 if t == 7 else torch.arange(1, 13) * 4
    u = torch.linspace(0.0, 1.0, 12)
    w = torch.tensor([0.0, 0.25, 1.0, 3.0] * 3)
    out = denoiser(x, steps, Conditions(denoiser.encode_condition(u), w))
    t64 = torch.full((12,), steps) if isinstance(steps, int) else steps
    double = copy.deepcopy(net).double()
    with torch.no_grad():
        cond, null = double(x.double(), t64, u.double()), double(x.double(), t64)
    expected = (1 + w.double())[:, None] * cond - w.double()[:, None] * null  # ε̂ = (1 + w)ε(u) − wε(∅)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(denoiser(x, steps).double(), null, rtol=1e-5, atol=1e-5)  # no conditions: ∅
    with torch.no_grad():
        nulls = denoiser(x, steps, Conditions(denoiser.encode_condition(torch.full((12,), NULL_CONDITION))))
    torch.testing.assert_close(nulls, denoiser(x, steps), rtol=0, atol=0)  # ∅ features are exact zeros


def reference_ddim(net: EpsilonMLP, n: int, seed: int, steps: list[int], u: torch.Tensor | None, w: float) -> torch.Tensor:
    """DDIM η = 0 (Song et al. 2021, eq. 12) in float64 with ε̂ = (1 + w)ε(x, t, u) − wε(x, t, ∅) (u None: ε(x, t, ∅))."""
    schedule = Schedule.from_config(ScheduleConfig())
    double = copy.deepcopy(net).double()
    x = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed)).double()
    for t, s in zip(steps, [*steps[1:], 0]):
        tt = torch.full((n,), t)
        with torch.no_grad():
            eps = double(x, tt) if u is None else (1 + w) * double(x, tt, u.double()) - w * double(x, tt)
        ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s) if s > 0 else 1.0
        x0 = (x - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        x = ab_s**0.5 * x0 + (1 - ab_s) ** 0.5 * eps
    return x


@pytest.mark.parametrize(("u", "w"), [(None, 0.0), (0.25, 0.0), (0.6, 2.0), ("per-point", 0.25)])
def test_the_engine_with_the_network_matches_a_float64_guided_ddim(u: object, w: float) -> None:
    """u None is the null path: unconditional sampling of the same network, through the ∅ bias."""
    from model.diffusion import SamplerSpec, make_plan, subsequence
    from model.engine import sample

    net = tiny_guided_net(2)
    schedule = Schedule.from_config(ScheduleConfig())
    n = 200
    positions = torch.linspace(0, 1, n) if u == "per-point" else None if u is None else torch.full((n,), float(u))  # type: ignore[arg-type]
    request_u = positions.numpy() if u == "per-point" else u
    got = sample(NetDenoiser(net, "cpu"), make_plan(schedule, SamplerSpec("ddim", steps=10)), n, 4, u=request_u, guidance=w).x0  # type: ignore[arg-type]
    expected = reference_ddim(net, n, 4, subsequence(schedule, 10), positions, w)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
