"""The ε-network's fast path, the data, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import fit_normalisation, swiss_roll
from model.net import EpsilonMLP, NetConfig, sinusoidal_embedding
from model.train import TrainConfig, downsample_curve, learning_rate, train


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
def test_fast_path_matches_forward_for_a_shared_t(activation: str) -> None:
    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=32, depth=3, activation=activation), 50).eval()
    x = torch.randn(100, 2)
    with torch.inference_mode():
        table = net.time_bias(torch.arange(51))
        for t in (1, 17, 50):
            torch.testing.assert_close(net.forward_with_bias(x, table[t]), net(x, torch.full((100,), t)))


def test_time_embedding_is_sinusoidal_not_the_raw_integer() -> None:
    emb = sinusoidal_embedding(torch.tensor([0, 1, 50]), 8, 50)
    assert emb.shape == (3, 8)
    assert torch.all(emb.abs() <= 1.0)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert not torch.allclose(emb[1], emb[2])


def test_swiss_roll_is_seeded_and_normalisation_keeps_the_aspect_ratio() -> None:
    a, b, c = swiss_roll(2000, seed=1), swiss_roll(2000, seed=1), swiss_roll(2000, seed=2)
    assert a.shape == (2000, 2) and np.array_equal(a, b) and not np.array_equal(a, c)
    norm = fit_normalisation(a, 0.5)
    z = norm.normalise(a)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-12)
    assert np.sqrt((z**2).mean()) == pytest.approx(1.0)
    ratio_raw = a.std(0)[0] / a.std(0)[1]
    assert z.std(0)[0] / z.std(0)[1] == pytest.approx(ratio_raw)  # one scalar scale
    np.testing.assert_allclose(norm.denormalise(z), a)


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainConfig(steps=1000, warmup_steps=100, lr=1e-3, lr_schedule="cosine", lr_min_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-5)
    assert learning_rate(config, 99) == pytest.approx(1e-3)
    assert learning_rate(config, 999) == pytest.approx(1e-4, rel=1e-3)
    assert learning_rate(TrainConfig(lr_schedule="constant", warmup_steps=0, lr=1e-3), 500) == 1e-3


def test_loss_curve_is_downsampled_to_at_most_200_points() -> None:
    curve = downsample_curve(np.arange(1000, dtype=float))
    assert len(curve) == 200 and curve[-1][0] == 1000
    assert len(downsample_curve(np.ones(50))) == 50


def test_a_tiny_training_run_lowers_the_loss_and_is_reproducible() -> None:
    config = TrainConfig(steps=400, batch_size=256, n_train=5000, warmup_steps=20, net=NetConfig(hidden=32, depth=2))
    first = train(config, torch.device("cpu"), progress=False)
    curve = first.summary["loss_curve"]
    early = np.mean([loss for _, loss in curve[:10]])
    late = np.mean([loss for _, loss in curve[-10:]])
    assert late < 0.9 * early  # an untrained net stays near 1.0; the floor here is about 0.7
    second = train(config, torch.device("cpu"), progress=False)
    for p, q in zip(first.net.parameters(), second.net.parameters()):
        assert torch.equal(p, q)
