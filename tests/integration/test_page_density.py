"""The page's density panel and the score arrows on the forward panel, in Debian's headless Chromium
against a real server on the shipped models (fixtures from test_page.py)."""

from __future__ import annotations

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.data import model_log_density
from tests.conftest import SHIPPED_CHECKPOINT
from tests.integration import test_page
from tests.integration.test_page import PAINTED, TIMEOUT_MS, Visit

pytestmark = pytest.mark.browser
browser = test_page.browser  # the page's fixtures: a Chromium, and a visit with every panel filled
visit = test_page.visit

GRID = 48


def test_the_density_panel_paints_the_models_log_p_with_the_true_rolls_contour(visit: Visit) -> None:
    page = visit.page
    page.wait_for_function("() => window.swirl.ready.density && window.swirl.densityDraws > 0", timeout=4 * TIMEOUT_MS)
    density = visit.state("density")
    T = visit.state("T")
    assert density["grid"] == GRID and density["evaluations"] == 2 * T - 1
    log_p = np.array(density["logProb"])
    assert log_p.shape == (GRID * GRID,) and np.isfinite(log_p).all()
    # the heatmap is the model's density on the page's lattice: it ranks the lattice as the true roll does
    axis = np.linspace(-3, 3, GRID)
    xs, ys = np.meshgrid(axis, axis)
    true = model_log_density(np.stack([xs.ravel(), ys.ravel()], axis=1), load_checkpoint(SHIPPED_CHECKPOINT).normalisation)
    inside = true > true.max() - 12  # where either density is meaningful
    assert np.corrcoef(log_p[inside], true[inside])[0, 1] > 0.9
    # the contour's level holds 90% of the true mass: between the lattice's smallest and largest density
    level = visit.state("trueLevel")
    assert 0 < level < np.exp(true).max()
    pixels = page.eval_on_selector("#density-canvas", PAINTED)
    assert pixels["coloured"] > 5_000, pixels
    caption = page.text_content("#density-info")
    assert f"{GRID * GRID:,} points" in caption and f"{2 * T - 1} network evaluations" in caption
    assert page.is_hidden("#error")
    assert visit.unexpected_errors() == []


def test_the_score_arrows_follow_the_t_slider_and_leave_at_t0(visit: Visit) -> None:
    page = visit.page
    T = visit.state("T")
    page.wait_for_function(f"() => window.swirl.scoreT === {round(T / 2)} && window.swirl.scoreDraws > 0")
    with page.expect_request(lambda r: "/score?" in r.url and "t=10&" in r.url):
        page.fill("#t-slider", "10")
        page.dispatch_event("#t-slider", "input")
    page.wait_for_function("() => window.swirl.scoreT === 10 && window.swirl.forwardT === 10")
    draws = visit.state("scoreDraws")
    page.wait_for_function(f"() => window.swirl.scoreDraws >= {draws}")
    with_arrows = page.eval_on_selector("#forward-canvas", PAINTED)
    assert "t = 10" in page.text_content("#score-info")
    page.fill("#t-slider", "0")
    page.dispatch_event("#t-slider", "input")
    page.wait_for_function("() => window.swirl.scoreT === null && window.swirl.forwardT === 0")
    without = page.eval_on_selector("#forward-canvas", PAINTED)
    # the arrows (teal) cover more of the canvas than clean points alone
    assert with_arrows["coloured"] > without["coloured"] + 1_000, (with_arrows, without)
    assert "t ≥ 1" in page.text_content("#score-info")
    assert visit.unexpected_errors() == []
