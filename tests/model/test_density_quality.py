"""The density's measures (model/density_quality.py) and ``model.evaluate --no-samplers``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.density_quality import DensityConfig, auroc, evaluate_density, kde_log_density
from model.evaluate import EvalConfig, evaluate_checkpoint, main


def test_kde_matches_a_direct_float64_sum() -> None:
    rng = np.random.default_rng(0)
    train, points = rng.normal(size=(300, 2)), rng.normal(size=(40, 2)) * 2
    got = kde_log_density(train, points, (0.1, 0.5), chunk=7)
    for i, h in enumerate((0.1, 0.5)):
        squared = ((points[:, None, :] - train[None, :, :]) ** 2).sum(axis=2)
        direct = np.log(np.exp(-squared / (2 * h * h)).sum(axis=1) / (len(train) * 2 * math.pi * h * h))
        np.testing.assert_allclose(got[i], direct, rtol=0, atol=1e-9)


def test_auroc_orders_positives_over_negatives() -> None:
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0


def test_the_shipped_eps_model_beats_the_kde_and_ranks_like_the_truth() -> None:
    from model.checkpoint import load_checkpoint
    from tests.conftest import SHIPPED_CHECKPOINT

    result = evaluate_density(load_checkpoint(SHIPPED_CHECKPOINT), DensityConfig(n=1000))
    assert result["evaluations"] == 99 and result["n"] == 1000
    assert abs(result["nll"] - result["nll_true"]) < 0.05
    assert result["rank_correlation_roll"] > 0.9 and result["rank_correlation_box"] > 0.9
    assert abs(result["auroc"] - result["auroc_true"]) < 0.01


def test_no_samplers_adds_the_density_and_keeps_the_stored_sampler_results(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, path)
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["evaluation"] = {"samplers": {"ddim-10": {"two_sample_accuracy": 0.51}}, "n": 10000}
    (path / "checkpoint.json").write_text(json.dumps(meta))
    assert main([str(path), "--no-samplers", "--samples", "300", "--w2-samples", "300"]) == 0
    stored = json.loads((path / "checkpoint.json").read_text())["evaluation"]
    assert stored["samplers"] == {"ddim-10": {"two_sample_accuracy": 0.51}} and stored["n"] == 10000
    assert stored["density"]["n"] == 300 and math.isfinite(stored["density"]["nll"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        EvalConfig(samplers=False, density=False)


def test_a_student_gets_no_density_section() -> None:
    from tests.conftest import ROOT

    evaluation = evaluate_checkpoint(ROOT / "checkpoints" / "swiss-roll-v-student-2", EvalConfig(samplers=False), write=False)
    assert "density" not in evaluation and "samplers" in evaluation
