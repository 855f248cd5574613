"""``python -m model.evaluate checkpoints/<name>``: how close are the samples to the swiss roll?

Two measures, each with its noise floor (the same measure between two fresh draws of
the true roll, so a perfect model scores the floor, not zero):

* a classifier two-sample test (C2ST): gradient boosting, seeded (``random_state``), its
  accuracy at telling samples from real points under 2-fold cross-validation, so every
  one of the 2n points is classified once, by a classifier that never saw it
  (0.5 = indistinguishable); averaged over three n-point draws;
* the exact 2-Wasserstein distance (POT's network simplex on squared Euclidean costs)
  between ``n_w2`` samples and ``n_w2`` reference points, averaged over the same draws;
  its floor is averaged over as many pairs of fresh rolls.

Costs, and why these sizes: exact W2 needs the full n² cost matrix (n = 10,000: 800 MB,
and minutes of network simplex per draw), so it runs on the first 2,000 points of each
draw (32 MB); the C2ST keeps all 10,000 points per draw, and 2 folds instead of 5 fit
the classifier 2 times instead of 5 while still testing every point once. The defaults
evaluated four samplers in 205 s at 521 MiB peak RSS on a 2-core machine whose cores other
jobs kept busy (load 12-16); the previous settings took 16 minutes and 3.4 GB
(benchmarks/RESULTS.md). Everything runs single-threaded by default: OpenMP
threads sharing busy cores slow each other down many times over.

And the model as a density (``model.density_quality``, stored under ``evaluation.density``): its
log p by the probability-flow ODE on 10,000 fresh points against the true roll's and a best-bandwidth
KDE's NLL, its rank correlation with the true log density, and the AUROC of roll against box
points. ``--no-samplers`` computes only these and keeps the stored sampler results.

Everything is computed in the normalised space the diffusion runs in. The evaluation
records its settings, how long it took and its peak memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ot
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from model import evaluate_guided as guided_measures
from model.checkpoint import Checkpoint, load_checkpoint, update_metadata
from model.cli import add_dataclass_options, build_dataclass
from model.data import swiss_roll
from model.denoiser import NetDenoiser
from model.density_quality import DensityConfig, evaluate_density
from model.device import resolve_device
from model.diffusion import SamplerSpec
from model.engine import sample

log = logging.getLogger("swirl.evaluate")

REFERENCE_SEED = 10_001  # the fresh roll: never the training seed
FLOOR_SEED = 20_002  # a second fresh roll, for the noise floors (W2's further pairs use FLOOR_SEED + 1, …)
SAMPLE_SEEDS = (1234, 1235, 1236)  # both measures are averaged over these draws
C2ST_FOLDS = 2  # every point is classified once either way; 2 folds fit 2 classifiers, 5 folds fit 5


@dataclass(frozen=True)
class EvalConfig:
    """What one evaluation computes; recorded with its results."""

    n: int = 10_000  # samples per draw for the two-sample test (and the reference roll's size)
    n_w2: int = 2_000  # points per draw for the exact W2 (its cost matrix holds n_w2² float64)
    seeds: tuple[int, ...] = SAMPLE_SEEDS  # one draw per seed; both measures are averaged over them
    folds: int = C2ST_FOLDS  # cross-validation folds of the two-sample test
    threads: int = 1  # CPU threads for torch and for scikit-learn/POT's OpenMP; 0 keeps their defaults
    samplers: bool = True  # the samplers' measures (C2ST, W2); --no-samplers keeps the stored ones and adds the density's
    density: bool = True  # the likelihood's measures: NLL against the true density and a KDE, rank correlations, AUROC

    def __post_init__(self) -> None:
        if self.n < 10 or not 2 <= self.n_w2 <= self.n:
            raise ValueError(f"need n >= 10 and 2 <= n_w2 <= n, got n={self.n}, n_w2={self.n_w2}")
        if not self.seeds or self.folds < 2 or self.threads < 0:
            raise ValueError("need at least one seed, folds >= 2 and threads >= 0")
        if not (self.samplers or self.density):
            raise ValueError("nothing to evaluate: --no-samplers and --no-density together")


DEFAULT_SAMPLERS = (
    SamplerSpec("ddpm"),
    SamplerSpec("ddim", steps=10),
    SamplerSpec("ddim", steps=20),
    SamplerSpec("dpmpp2m", steps=10),
)


FEW_STEP_SAMPLERS = (  # what a zero-terminal-SNR v-model is for (docs/quality.md, few-step sampling)
    SamplerSpec("dpmpp2m", steps=None),
    SamplerSpec("dpmpp2m", steps=20, spacing="quadratic"),
)


def default_specs(checkpoint: Checkpoint) -> tuple[SamplerSpec, ...]:
    """Every sampler worth reporting for this model: a student's own step counts, a
    zero-terminal-SNR model's accurate ODE solvers too, and the common samplers; for a guided
    model, DDPM-50 through the null condition (its guided measures are ``model.evaluate_guided``'s)."""
    if checkpoint.net_config.conditioned:
        return (SamplerSpec("ddpm"),)
    if checkpoint.student_grids:
        return tuple(SamplerSpec("student", steps=k) for k in sorted(checkpoint.student_grids))
    if checkpoint.schedule.zero_terminal_snr:
        return DEFAULT_SAMPLERS + FEW_STEP_SAMPLERS
    return DEFAULT_SAMPLERS


def sampler_label(spec: SamplerSpec, timesteps: int) -> str:
    label = f"{spec.sampler}-{spec.steps or timesteps}" + (f"-eta{spec.eta:g}" if spec.eta else "")
    return label + (f"-{spec.spacing}" if spec.spacing else "")


def two_sample_accuracy(a: np.ndarray, b: np.ndarray, seed: int = 0, folds: int = C2ST_FOLDS) -> float:
    """Cross-validated accuracy of a gradient-boosting classifier telling ``a`` from ``b``.

    Deterministic: the classifier and the fold split are seeded, so the same points always score the same.
    """
    features = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    classifier = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False, random_state=seed)
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(classifier, features, labels, cv=splits, scoring="accuracy").mean())


def wasserstein2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 between two equal-weight point clouds."""
    cost = ot.dist(a.astype(np.float64), b.astype(np.float64), metric="sqeuclidean")
    weights_a = np.full(len(a), 1.0 / len(a))
    weights_b = np.full(len(b), 1.0 / len(b))
    return float(np.sqrt(ot.emd2(weights_a, weights_b, cost, numItermax=10_000_000)))


@dataclass(frozen=True)
class Reference:
    """A fresh roll to compare against, and the noise floors of both measures."""

    points: np.ndarray  # (n, 2)
    accuracy_floor: float  # C2ST accuracy between two fresh n-point rolls
    w2_floor: float  # mean exact W2 between pairs of fresh n_w2-point rolls
    w2_floor_per_pair: tuple[float, ...]


def make_reference(checkpoint: Checkpoint, config: EvalConfig) -> Reference:
    norm = checkpoint.normalisation
    reference = norm.normalise(swiss_roll(config.n, norm.noise, seed=REFERENCE_SEED))
    second = norm.normalise(swiss_roll(config.n, norm.noise, seed=FLOOR_SEED))
    floors = [wasserstein2(second[: config.n_w2], reference[: config.n_w2])]
    for k in range(1, len(config.seeds)):  # as many pairs as the samples get draws
        extra = norm.normalise(swiss_roll(config.n_w2, norm.noise, seed=FLOOR_SEED + k))
        floors.append(wasserstein2(extra, reference[: config.n_w2]))
    accuracy_floor = two_sample_accuracy(second, reference, folds=config.folds)
    return Reference(reference, accuracy_floor, float(np.mean(floors)), tuple(floors))


def draw_samples(checkpoint: Checkpoint, spec: SamplerSpec, n: int, seed: int = SAMPLE_SEEDS[0]) -> tuple[np.ndarray, float]:
    """(n, 2) samples and the seconds the chain took."""
    plan = checkpoint.plan(spec)
    started = time.perf_counter()
    result = sample(NetDenoiser(checkpoint.net, checkpoint.device), plan, n, seed)  # the engine, as the service runs it
    elapsed = time.perf_counter() - started
    return result.x0.cpu().numpy().astype(np.float64), elapsed


def evaluate_samplers(
    checkpoint: Checkpoint,
    specs: tuple[SamplerSpec, ...],
    reference: Reference,
    config: EvalConfig,
    w2: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per sampler: accuracy and W2 averaged over one draw per seed (single draws scatter by
    about ±0.006 in accuracy and ±20% in W2), and the time of the first draw."""
    results: dict[str, dict[str, Any]] = {}
    for spec in specs:
        label = sampler_label(spec, checkpoint.schedule.timesteps)
        evaluations = len(checkpoint.plan(spec).steps)
        draws = [draw_samples(checkpoint, spec, config.n, seed) for seed in config.seeds]
        accuracies = [two_sample_accuracy(samples, reference.points, folds=config.folds) for samples, _ in draws]
        row: dict[str, Any] = {
            "sampler": spec.sampler,
            "steps": evaluations,
            "eta": spec.eta,
            "network_evaluations": evaluations,
            "sample_seconds": round(draws[0][1], 4),
            "two_sample_accuracy": round(float(np.mean(accuracies)), 4),
            "two_sample_accuracy_per_seed": [round(a, 4) for a in accuracies],
        }
        if w2:  # exact W2 on the first n_w2 points of each draw
            distances = [wasserstein2(samples[: config.n_w2], reference.points[: config.n_w2]) for samples, _ in draws]
            value = float(np.mean(distances))
            row.update(w2=round(value, 4), w2_per_seed=[round(d, 4) for d in distances], w2_over_floor=round(value / reference.w2_floor, 3))
        log.info("%s: %s", label, row)
        results[label] = row
    return results


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate_checkpoint(
    path: str | Path,
    config: EvalConfig | None = None,
    device: torch.device | str = "cpu",
    specs: tuple[SamplerSpec, ...] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate the samplers in ``specs`` (default: ``default_specs``) and the model's density
    (``model.density_quality``, under ``evaluation.density``), and (by default) store the results in
    checkpoint.json. Without ``config.samplers`` the stored sampler results are kept as they are."""
    config = config or EvalConfig()
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        with threadpool_limits(config.threads or None):
            checkpoint = load_checkpoint(path, device)
            # a distilled student has no density of its own (model.likelihood.check_density_model)
            density = evaluate_density(checkpoint, DensityConfig(n=config.n)) if config.density and not checkpoint.student_grids else None
            if not config.samplers:
                evaluation = {key: value for key, value in checkpoint.meta.get("evaluation", {}).items() if key != "density"}
                if density is not None:
                    evaluation["density"] = density
                if write:
                    update_metadata(path, evaluation=evaluation)
                return evaluation
            specs = specs if specs is not None else default_specs(checkpoint)
            reference = make_reference(checkpoint, config)
            samplers = evaluate_samplers(checkpoint, specs, reference, config)
            guided = evaluate_guided(checkpoint, config) if checkpoint.net_config.conditioned else None
    finally:
        torch.set_num_threads(threads_before)
    evaluation = {
        "n": config.n,
        "n_w2": config.n_w2,
        "folds": config.folds,
        "reference_seed": REFERENCE_SEED,
        "sample_seeds": list(config.seeds),
        "two_sample_accuracy_floor": round(reference.accuracy_floor, 4),
        "w2_floor": round(reference.w2_floor, 4),
        "w2_floor_per_pair": [round(d, 4) for d in reference.w2_floor_per_pair],
        "samplers": samplers,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(peak_rss_mib()),
        "threads": config.threads,
        "device": str(checkpoint.device),
    }
    if density is not None:
        evaluation["density"] = density
    if guided is not None:
        evaluation["guided"] = guided
    log.info("evaluated %s in %.1f s (peak RSS %d MiB)", path, evaluation["wall_time_s"], evaluation["peak_rss_mib"])
    if write:
        sections: dict[str, Any] = {"evaluation": evaluation}
        if guided is not None and checkpoint.condition is not None:  # the measured best becomes the model's default
            sections["condition"] = {**checkpoint.condition, "default_guidance": guided["default_guidance"]}
        update_metadata(path, **sections)
    return evaluation


def evaluate_guided(checkpoint: Checkpoint, config: EvalConfig) -> dict[str, Any]:
    """A conditioned model's measures (``model.evaluate_guided``) and the default guidance they pick."""
    whole = guided_measures.whole_roll(checkpoint, config.n, config.seeds, config.folds, two_sample_accuracy, REFERENCE_SEED)
    fixed = guided_measures.fixed_u(checkpoint, config.n, config.seeds, config.folds, two_sample_accuracy)
    return {"sampler": "ddpm-50", "whole_roll": whole, "default_guidance": guided_measures.best_guidance(whole), "fixed_u": fixed}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description="Evaluate a checkpoint's samples against a fresh swiss roll; store the results in its checkpoint.json.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint directory")
    add_dataclass_options(p, EvalConfig, title="what to compute", rename={"n": "samples", "n_w2": "w2-samples"}, skip=frozenset({"seeds"}))
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available (default: auto)")
    p.add_argument("--no-write", action="store_true", help="print only; leave checkpoint.json as it is")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        config = build_dataclass(EvalConfig, args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    evaluation = evaluate_checkpoint(args.checkpoint, config, resolve_device(args.device), write=not args.no_write)
    print(json.dumps(evaluation, indent=2))  # noqa: T201 - the CLI's result
    return 0


if __name__ == "__main__":
    sys.exit(main())
