"""`python -m model.evaluate`: exact W2, a seeded two-sample test, and a recorded, bounded evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.data import swiss_roll
from model.diffusion import SamplerSpec
from model.evaluate import EvalConfig, evaluate_checkpoint, main, two_sample_accuracy, wasserstein2

SMALL = EvalConfig(n=600, n_w2=300, seeds=(1, 2))


def test_w2_of_a_translated_cloud_is_the_translation_exactly() -> None:
    # Exact OT between a cloud and its translate by d: W2 = |d| (the identity coupling is optimal).
    points = np.random.default_rng(0).normal(size=(400, 2))
    shift = np.array([0.3, -0.4])
    assert wasserstein2(points, points + shift) == pytest.approx(0.5, rel=1e-9)
    assert wasserstein2(points, points) == pytest.approx(0.0, abs=1e-7)  # sqrt of a float64 cost sum


def test_the_two_sample_test_is_seeded_and_separates_what_differs() -> None:
    a, b = swiss_roll(2000, 0.5, seed=1) / 7, swiss_roll(2000, 0.5, seed=2) / 7
    same = two_sample_accuracy(a, b)
    assert same == two_sample_accuracy(a, b)  # the same points always score the same
    assert abs(same - 0.5) < 0.03
    shifted = two_sample_accuracy(a, b + np.array([0.2, 0.0]))
    assert shifted > 0.6
    assert abs(two_sample_accuracy(a, b, folds=5) - 0.5) < 0.03


def test_eval_config_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="n_w2"):
        EvalConfig(n=100, n_w2=200)
    with pytest.raises(ValueError, match="folds"):
        EvalConfig(folds=1)


def test_evaluation_records_its_settings_time_and_memory(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, path)
    specs = (SamplerSpec("ddim", steps=10), SamplerSpec("ddpm"))
    result = evaluate_checkpoint(path, SMALL, specs=specs)
    stored = json.loads((path / "checkpoint.json").read_text())["evaluation"]
    assert stored == json.loads(json.dumps(result))
    assert result["n"] == 600 and result["n_w2"] == 300 and result["folds"] == 2 and result["sample_seeds"] == [1, 2]
    assert 0 < result["wall_time_s"] < 120 and 0 < result["peak_rss_mib"] < 1024
    assert len(result["w2_floor_per_pair"]) == 2 and result["w2_floor"] == pytest.approx(np.mean(result["w2_floor_per_pair"]), abs=1e-4)
    for row in result["samplers"].values():
        assert len(row["two_sample_accuracy_per_seed"]) == 2 and len(row["w2_per_seed"]) == 2
        assert row["w2_over_floor"] == pytest.approx(row["w2"] / result["w2_floor"], rel=1e-2)
    # deterministic: the same checkpoint scores the same (seeded draws, seeded classifier)
    again = evaluate_checkpoint(path, SMALL, specs=specs, write=False)

    def scores(evaluation: dict) -> dict:
        return {label: {k: v for k, v in row.items() if k != "sample_seconds"} for label, row in evaluation["samplers"].items()}

    assert scores(again) == scores(result)


def test_an_untrained_network_scores_far_worse_than_the_shipped_one(tmp_path: Path) -> None:
    import torch

    from model.checkpoint import load_checkpoint, read_metadata, save_checkpoint
    from model.net import EpsilonMLP
    from tests.conftest import SHIPPED_CHECKPOINT

    trained = load_checkpoint(SHIPPED_CHECKPOINT)
    torch.manual_seed(0)
    untrained = EpsilonMLP(trained.net_config, trained.schedule.timesteps)
    save_checkpoint(tmp_path / "untrained", untrained, trained.schedule.config, trained.normalisation, read_metadata(SHIPPED_CHECKPOINT)["training"])
    specs = (SamplerSpec("ddim", steps=10),)
    good = evaluate_checkpoint(SHIPPED_CHECKPOINT, SMALL, specs=specs, write=False)["samplers"]["ddim-10"]
    bad = evaluate_checkpoint(tmp_path / "untrained", SMALL, specs=specs, write=False)["samplers"]["ddim-10"]
    assert bad["two_sample_accuracy"] > good["two_sample_accuracy"] + 0.1
    assert bad["w2_over_floor"] > 2 * good["w2_over_floor"]


def test_the_cli_validates_and_leaves_the_checkpoint_alone_with_no_write(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, path)
    before = (path / "checkpoint.json").read_text()
    assert main([str(path), "--samples", "100", "--w2-samples", "200"]) == 2
    assert main([str(path), "--samples", "300", "--w2-samples", "100", "--device", "cpu", "--no-write"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 300 and set(printed["samplers"]) == {"ddpm-50", "ddim-10", "ddim-20", "dpmpp2m-10"}
    assert (path / "checkpoint.json").read_text() == before
