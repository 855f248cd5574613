"""The swiss roll: drawing points with a seed and normalising them with stored constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_swiss_roll

DEFAULT_NOISE = 0.5


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
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    # SeedSequence takes any non-negative integer (sklearn's int seeds stop at 2**32).
    random_state = np.random.RandomState(np.random.MT19937(np.random.SeedSequence(seed)))
    points3d, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=random_state)
    return np.ascontiguousarray(points3d[:, [0, 2]])


def fit_normalisation(raw: np.ndarray, noise: float) -> Normalisation:
    """Constants that centre ``raw`` per axis and scale it to unit overall standard deviation."""
    mean = raw.mean(axis=0)
    scale = float(np.sqrt(((raw - mean) ** 2).mean()))
    return Normalisation(noise=noise, mean=(float(mean[0]), float(mean[1])), scale=scale)
