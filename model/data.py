"""The swiss roll: drawing points with a seed and normalising them with stored constants.

Each point also has its arc position ``u ∈ [0, 1]``: ``u = (t − 1.5π) / (3π)`` where ``t`` is
the roll parameter (sklearn's second output; ``u = 0`` the inner end, ``u = 1`` the outer).
Given u, a point is ``c(t) + noise·N(0, I)`` with ``c(t) = (t cos t, t sin t)``: the true
conditional ``conditional_swiss_roll`` draws from, the oracle for guided sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_swiss_roll

DEFAULT_NOISE = 0.5
ROLL_T_START = 1.5 * np.pi  # sklearn's roll parameter t runs over [1.5π, 4.5π]
ROLL_T_SPAN = 3.0 * np.pi


@dataclass(frozen=True)
class Normalisation:
    """Maps raw swiss-roll coordinates (x, z) to the space the diffusion runs in.

    ``normalised = (raw - mean) / scale``. One scalar ``scale`` for both axes keeps the
    roll's aspect ratio.
    """

    noise: float  # the noise the training roll was drawn with
    mean: tuple[float, float]  # per-axis mean of the training set (x, z)
    scale: float  # one standard deviation over both centred axes

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return (raw - np.asarray(self.mean)) / self.scale

    def denormalise(self, points: np.ndarray) -> np.ndarray:
        return points * self.scale + np.asarray(self.mean)


def swiss_roll(n: int, noise: float = DEFAULT_NOISE, seed: int = 0) -> np.ndarray:
    """Draw ``n`` raw swiss-roll points: columns x and z of sklearn's 3D roll, shape (n, 2), float64."""
    return swiss_roll_with_position(n, noise, seed)[0]


def swiss_roll_with_position(n: int, noise: float = DEFAULT_NOISE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``swiss_roll``'s points, (n, 2), with each one's arc position u, (n,), both float64.

    The same draws as ``swiss_roll(n, noise, seed)``: u comes from sklearn's second output.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    # SeedSequence takes any non-negative integer (sklearn's int seeds stop at 2**32).
    random_state = np.random.RandomState(np.random.MT19937(np.random.SeedSequence(seed)))
    points3d, t = make_swiss_roll(n_samples=n, noise=noise, random_state=random_state)
    return np.ascontiguousarray(points3d[:, [0, 2]]), position_from_roll_parameter(t)


def position_from_roll_parameter(t: np.ndarray) -> np.ndarray:
    """u = (t − 1.5π) / (3π): sklearn's roll parameter → arc position in [0, 1]."""
    return (np.asarray(t, dtype=np.float64) - ROLL_T_START) / ROLL_T_SPAN


def roll_centre(u: np.ndarray | float) -> np.ndarray:
    """c(t(u)) = (t cos t, t sin t) with t = 1.5π + 3π·u: the roll's centre line, shape (..., 2)."""
    t = ROLL_T_START + ROLL_T_SPAN * np.asarray(u, dtype=np.float64)
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=-1)


def conditional_swiss_roll(u: np.ndarray | float, n: int | None = None, noise: float = DEFAULT_NOISE, seed: int = 0) -> np.ndarray:
    """The true conditional: draws from N(c(t(u)), noise² I) in raw (data) space, float64.

    ``u`` a number: ``n`` draws at that position, (n, 2). ``u`` an array: one draw per
    entry, (len(u), 2) (``n`` must be None or equal its length).
    """
    positions = np.atleast_1d(np.asarray(u, dtype=np.float64))
    if positions.ndim != 1:
        raise ValueError(f"u must be a number or a 1-D array, got shape {positions.shape}")
    if np.ndim(u) == 0:
        if n is None or n < 1:
            raise ValueError(f"n must be at least 1 for a single u, got {n}")
        positions = np.full(n, positions[0])
    elif n is not None and n != positions.shape[0]:
        raise ValueError(f"n = {n} does not match the {positions.shape[0]} values of u")
    if not np.all((positions >= 0.0) & (positions <= 1.0)):
        raise ValueError("u must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    return roll_centre(positions) + noise * rng.standard_normal((positions.shape[0], 2))


def fit_normalisation(raw: np.ndarray, noise: float) -> Normalisation:
    """Constants that centre ``raw`` per axis and scale it to unit overall standard deviation."""
    mean = raw.mean(axis=0)
    scale = float(np.sqrt(((raw - mean) ** 2).mean()))
    return Normalisation(noise=noise, mean=(float(mean[0]), float(mean[1])), scale=scale)


# -- the true density: the oracle the model's likelihood is measured against -------------------

ROLL_T_RANGE = (1.5 * np.pi, 4.5 * np.pi)
"""sklearn's roll parameter: t = 1.5π(1 + 2u), u ~ U(0, 1), centre c(t) = (t cos t, t sin t)."""
QUADRATURE_PANELS = 150
QUADRATURE_ORDER = 8
"""Composite Gauss–Legendre over t: 150 panels × 8 nodes. The integrand's narrowest feature is
the Gaussian's width along the curve, noise/|c'(t)| ≥ 0.5/14.2 = 0.035 in t, against panels
9.42/150 = 0.063 wide holding 8 nodes each: the log density agrees with 4× as many panels to 1e-10 wherever
log p > −20 (further out the Gaussian in t sharpens: 1e-7 at −40; tests/model/test_density_oracle.py)."""


def roll_quadrature(panels: int = QUADRATURE_PANELS, order: int = QUADRATURE_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t_i and weights w_i (summing to 1) for E_t[f(t)], t ~ U(1.5π, 4.5π)."""
    unit_nodes, unit_weights = np.polynomial.legendre.leggauss(order)  # on [-1, 1], weights sum to 2
    low, high = ROLL_T_RANGE
    edges = np.linspace(low, high, panels + 1)
    half = (edges[1:] - edges[:-1])[:, None] / 2
    nodes = (edges[:-1, None] + half * (unit_nodes[None, :] + 1)).ravel()
    weights = (half * unit_weights[None, :]).ravel() / (high - low)
    return nodes, weights


def roll_log_density(raw: np.ndarray, noise: float = DEFAULT_NOISE, panels: int = QUADRATURE_PANELS, chunk: int = 1024) -> np.ndarray:
    """log p(x) of the raw roll at (n, 2) points ``raw`` (x, z), per unit area, float64.

    The roll is ``c(t) + noise·N(0, I)`` with t ~ U(1.5π, 4.5π) (``make_swiss_roll``'s x and z
    columns), so p(x) = E_t[N(x; c(t), noise² I)], computed by ``roll_quadrature`` with a
    log-sum-exp over the nodes (no underflow far from the roll).
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise ValueError(f"expected (n, 2) points, got shape {raw.shape}")
    nodes, weights = roll_quadrature(panels)
    centres = np.stack([nodes * np.cos(nodes), nodes * np.sin(nodes)], axis=1)  # (m, 2)
    log_weights = np.log(weights) - np.log(2 * np.pi * noise**2)
    out = np.empty(len(raw))
    for start in range(0, len(raw), chunk):
        block = raw[start : start + chunk]
        squared = ((block[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)  # (b, m)
        terms = log_weights[None, :] - squared / (2 * noise**2)
        top = terms.max(axis=1, keepdims=True)
        out[start : start + chunk] = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    return out


def model_log_density(points: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """log p of the true roll in the model's space: points = (raw − mean)/scale, so
    log p_model(points) = log p_raw(raw) + 2 log scale (2D: the area scales by scale²)."""
    raw = normalisation.denormalise(np.asarray(points, dtype=np.float64))
    return roll_log_density(raw, normalisation.noise) + 2 * np.log(normalisation.scale)
