"""log p(x) by the probability-flow ODE (Song et al. 2021), with the exact 2D divergence.

Continuous time. The network is trained at the integer steps t = 1…T only, and its output
between them is not an interpolation: the sinusoidal embedding's fastest component turns
1000/T = 20 rad per step, so at t = 49.5 the shipped ε-model answers (0.03, −0.03) where it
answers (0.11, −0.09) at both t = 49 and t = 50 (docs/density.md). Continuous time is therefore
built from the discrete schedule alone. With α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t), the angle
φ_t = atan2(σ_t, α_t) ∈ [0, π/2] gives α = cos φ and σ = sin φ; its values at the steps,
φ_0 = 0 < φ_1 < … < φ_T, are the knots, and between two knots the model's velocity

    v̂(x, φ) = α ε̂ − σ x̂_0        (the v of Salimans & Ho 2022; model/prediction.py)

is interpolated linearly in φ from its values at the two steps. At φ_0 = 0 the velocity is 0:
ε = −σ ∇log p vanishes with σ (the roll's density is smooth) and x̂_0 = x. Every prediction
type (ε, v, x0) has the same v̂, so ε- and v-models share one integrator.

The ODE. For x_φ = cos φ · x_0 + sin φ · ε the probability-flow ODE is dx/dφ = v̂(x, φ) (DDIM's
d(x/α)/d(σ/α) = ε̂, written in the angle). It stays regular where α_T = 0 (zero terminal SNR),
where σ/α is infinite: there φ_T = π/2 exactly, v̂ = −x̂_0 is finite for a v-model, and the
model's prior N(0, I) is the density at φ_T itself, with no cut-off and no correction. The
density follows the instantaneous change of variables, d log p_φ(x_φ)/dφ = −∇·v̂, so

    log p_0(x_0) = log N(x_T; 0, I) + ∫_0^{φ_T} ∇·v̂(x_φ, φ) dφ,

where x_T is x_0 carried to φ_T by the ODE. On the seed's schedule (ᾱ_T = 0.60) the model's
prior N(0, I) is not q(x_T), and the likelihood reports the model the samplers draw from.

The solver. On each interval [φ_k, φ_{k+1}] the velocity is linear in φ, so Heun's method (the
trapezoidal rule with an Euler predictor; Karras et al. 2022) has its nodes at the steps
themselves: stage 1 at x_k with step k's network, stage 2 at the predicted x with step k + 1's.
That is 2T − 1 network evaluations (v̂ = 0 at φ_0 costs none), each with its divergence. On the
Gaussian oracle (tests/model/test_likelihood.py) the whole path is exact to 1e-3 on the seed's
schedule, and on every schedule at T = 200; on the cosine and zero-terminal-SNR schedules at T = 50
the interpolation between steps costs up to 6e-3 (second order in the steps' spacing).

The divergence. v̂ = c_x·x + c_out·f(x, k) per step k (``prediction.estimates``), so
∇·v̂ = 2 c_x + c_out (∂f_1/∂x_1 + ∂f_2/∂x_2). The two diagonal entries of the 2×2 Jacobian come
from two backward passes (autograd): rows are independent, so the gradient of Σ_rows f_i is each
row's own ∂f_i/∂x. Exact, not a Hutchinson estimate.

Work. An evaluation with its divergence costs a forward and two backward passes through the
network, ``DIVERGENCE_COST`` = 3 sampling evaluations in the engine's admission (points ×
evaluations): 10,000 points cost 1.64 s of CPU (benchmarks/results/density.md), 1.8 M such units
per second, next to the engine's estimate of about 2 M sampling rows × steps per second.
``FlowIntegration`` advances one block of rows by one interval per call, so the service runs it
between sampling ticks in bounded slices (app/serving/density.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from model.data import Normalisation
from model.denoiser import StepDenoiser
from model.engine import NonFiniteError
from model.errors import InvalidParameter
from model.prediction import estimates
from model.schedule import Schedule

DIVERGENCE_COST = 3
"""A network evaluation with its exact divergence (a forward and two backward passes) counts as
this many sampling evaluations in the admission by work."""
FLOW_BLOCK_ROWS = 2048
"""Rows a slice advances by one interval: two evaluations with divergence of 2,048 rows cost about
as much as one sampling tick of 8,192 rows (CPU_TICK_ROWS), so a slice between ticks at most
doubles a tick's time."""


@dataclass(frozen=True, eq=False)
class FlowGrid:
    """The knots of continuous time and each step's map from the network's output f to v̂.

    Index k is step k (0…T); at k = 0 the velocity is 0 and the maps are unused.
    """

    phi: np.ndarray  # (T+1,) φ_k = atan2(σ_k, α_k), from 0 to φ_T (π/2 at zero terminal SNR)
    c_x: np.ndarray  # (T+1,) v̂ = c_x·x + c_out·f at step k
    c_out: np.ndarray  # (T+1,)

    @classmethod
    def from_schedule(cls, schedule: Schedule, prediction: str) -> FlowGrid:
        alpha_bar = schedule.alpha_bars_with_zero()
        alpha, sigma = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
        phi = np.arctan2(sigma, alpha)
        c_x, c_out = np.zeros_like(phi), np.zeros_like(phi)
        for k in range(1, len(phi)):
            # x̂_0 = x0_x·x + x0_out·f and ε̂ = eps_x·x + eps_out·f, so v̂ = α ε̂ − σ x̂_0 is linear in (x, f)
            e = estimates(prediction, float(alpha[k]), float(sigma[k]))
            c_x[k] = alpha[k] * e.eps_x - sigma[k] * e.x0_x
            c_out[k] = alpha[k] * e.eps_out - sigma[k] * e.x0_out
        return cls(phi=phi, c_x=c_x, c_out=c_out)

    @property
    def timesteps(self) -> int:
        return len(self.phi) - 1

    @property
    def evaluations(self) -> int:
        """Network evaluations (each with its divergence) per point: 2T − 1."""
        return 2 * self.timesteps - 1


def check_density_model(student_grids: dict[int, list[int]] | None, teacher: str | None = None) -> None:
    """A distilled student has no density of its own: its network was trained at its grid's few steps
    only (as a jump along the teacher's ODE, not as a velocity), and the flow needs every step.
    InvalidParameter("model") naming its teacher."""
    if student_grids:
        steps = sorted({t for grid in student_grids.values() for t in grid})
        raise InvalidParameter(
            "model",
            f"a distilled student knows only the steps {steps} of its grids, not a velocity at every step; "
            f"ask its teacher{f' ({teacher})' if teacher else ''} for densities and scores",
        )


def velocity(denoiser: StepDenoiser, grid: FlowGrid, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """v̂(x, φ_k) and its exact divergence at step k, for (R, 2) points; both without a graph."""
    if k == 0:
        return torch.zeros_like(x), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    # autograd on, also on a thread that runs in inference mode (the service's engine thread)
    with torch.inference_mode(False), torch.enable_grad():
        inputs = x.detach().clone().requires_grad_(True)
        out = denoiser(inputs, k)
        d1 = torch.autograd.grad(out[:, 0].sum(), inputs, retain_graph=True)[0][:, 0]
        d2 = torch.autograd.grad(out[:, 1].sum(), inputs)[0][:, 1]
    c_x, c_out = float(grid.c_x[k]), float(grid.c_out[k])
    v = c_x * x + c_out * out.detach()
    return v, 2.0 * c_x + c_out * (d1 + d2)


def gaussian_log_prior(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) of (R, 2) points: the model's prior at φ_T."""
    return -0.5 * (x * x).sum(dim=1) - math.log(2 * math.pi)


@dataclass(eq=False)
class _FlowBlock:
    start: int  # first row within the request
    x: torch.Tensor  # (rows, 2) float64: x at φ_k
    k: int = 0  # intervals done
    divergence: torch.Tensor | None = None  # (rows,) float64: ∫_0^{φ_k} ∇·v̂ dφ so far


@dataclass(eq=False)
class FlowIntegration:
    """One request's ODE from φ_0 = 0 to φ_T, resumable: ``advance`` takes one block of rows
    through one interval, so a server can interleave the work with its sampling ticks.

    The state (x and the integral of the divergence) is float64; the network sees float32.
    """

    denoiser: StepDenoiser
    grid: FlowGrid
    points: torch.Tensor  # (n, 2) x_0 in the model's space
    block_rows: int = FLOW_BLOCK_ROWS
    blocks: list[_FlowBlock] = field(default_factory=list)
    next_block: int = 0  # round robin over the blocks, so all advance together

    def __post_init__(self) -> None:
        x = self.points.detach().to(self.denoiser.device, torch.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {tuple(x.shape)}")
        self.blocks = [
            _FlowBlock(start, x[start : start + self.block_rows].clone(), divergence=x.new_zeros(min(self.block_rows, len(x) - start)))
            for start in range(0, len(x), self.block_rows)
        ]

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    @property
    def done(self) -> bool:
        return all(block.k == self.grid.timesteps for block in self.blocks)

    @property
    def work(self) -> int:
        """Points × evaluations × DIVERGENCE_COST: what admission counts."""
        return self.n * self.grid.evaluations * DIVERGENCE_COST

    def advance(self) -> int:
        """One Heun step over the next interval for one block; returns the work it did (0 when done)."""
        for _ in range(len(self.blocks)):
            block = self.blocks[self.next_block]
            self.next_block = (self.next_block + 1) % len(self.blocks)
            if block.k < self.grid.timesteps:
                return self._heun(block)
        return 0

    def _heun(self, block: _FlowBlock) -> int:
        # 1. the velocity at the interval's start (step k), 2. an Euler predictor to φ_{k+1},
        # 3. the velocity there (step k + 1), 4. the trapezoidal rule for x and for ∫∇·v̂
        k, h = block.k, float(self.grid.phi[block.k + 1] - self.grid.phi[block.k])
        v1, div1 = velocity(self.denoiser, self.grid, block.x.float(), k)
        predicted = block.x + h * v1.double()
        v2, div2 = velocity(self.denoiser, self.grid, predicted.float(), k + 1)
        block.x = block.x + (0.5 * h) * (v1.double() + v2.double())
        assert block.divergence is not None
        block.divergence = block.divergence + (0.5 * h) * (div1.double() + div2.double())
        block.k = k + 1
        return block.x.shape[0] * (1 if k == 0 else 2) * DIVERGENCE_COST

    def run(self) -> np.ndarray:
        """Advance until done; the log densities."""
        while self.advance():
            pass
        return self.log_prob()

    def log_prob(self) -> np.ndarray:
        """(n,) float64 log p_0(x_0) per unit area in the model's space; NonFiniteError if any is NaN or inf."""
        if not self.done:
            raise RuntimeError("the flow has not reached φ_T yet")
        parts = []
        for block in self.blocks:
            assert block.divergence is not None
            parts.append((gaussian_log_prior(block.x) + block.divergence).cpu().numpy())
        result = np.concatenate(parts) if parts else np.zeros(0)
        if not np.isfinite(result).all():
            raise NonFiniteError("the probability-flow ODE produced non-finite values (NaN or inf)")
        return result

    def endpoints(self) -> np.ndarray:
        """(n, 2) x at φ_T (the latents the ODE maps the points to), once done."""
        return np.concatenate([block.x.cpu().numpy() for block in self.blocks])


def log_prob(denoiser: StepDenoiser, schedule: Schedule, prediction: str, points: torch.Tensor | np.ndarray, block_rows: int = FLOW_BLOCK_ROWS) -> np.ndarray:
    """log p_0 of (n, 2) points in the model's space under the model (see the module docstring), float64."""
    x = torch.as_tensor(np.asarray(points, dtype=np.float64)) if isinstance(points, np.ndarray) else points
    return FlowIntegration(denoiser, FlowGrid.from_schedule(schedule, prediction), x, block_rows=block_rows).run()


def log_prob_in_space(log_prob_model: np.ndarray, space: str, normalisation: Normalisation) -> np.ndarray:
    """Per unit area in ``space``: the model's normalised space as computed, or the data's, where
    raw = point × scale + mean stretches areas by scale², so log p_data = log p_model − 2 log scale."""
    if space == "model":
        return log_prob_model
    if space == "data":
        return log_prob_model - 2.0 * math.log(normalisation.scale)
    raise ValueError(f"Unknown space {space!r}; valid ones are model, data")
