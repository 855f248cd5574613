"""The model repository: named models, their loaded versions, and zero-downtime reload.

Where models come from
- ``SWIRL_MODELS``: one or more directories (``:``-separated); every subfolder holding a
  ``checkpoint.json`` is a model named by its folder (hidden folders, such as the staging
  folders ``model.train`` publishes from, are skipped). A name in a later directory
  replaces the same name in an earlier one, so a retrained ``swiss-roll`` in a volume
  replaces the one shipped in the image.
- Otherwise ``SWIRL_CHECKPOINT``: one model, named by its folder.

Start-up verifies every model exactly as ``load_checkpoint`` does (sha256 of the weights,
format, config). A model that fails is left out with an error log line naming it and shown
as ``unavailable`` in ``GET /models`` (requests naming it get 503), unless it is the
default model: then start-up fails, as it does when no model loads at all.

Reload (``reload()``, from SIGHUP or ``POST /admin/reload``) looks at the folders again.
A new or changed model is loaded and verified beside the version serving, put into the
engine and warmed up between its ticks; then the current version is switched atomically
with admission (``Worker.switch``): requests admitted before the switch finish on the old
version, later ones get the new, and the old version leaves the engine when its last
request ends. A version that fails verification leaves the old one serving; the failure is
logged, shown in ``GET /models`` (``last_reload``) and counted
(``swirl_model_reloads_total{result="failed"}``). A folder that disappeared takes its model
out of service the same way (never the default model's: that one keeps serving).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.config import Settings
from app.errors import ServiceUnavailable
from app.metrics import Metrics
from app.serving.worker import ServedModel, Worker
from app.wire.encoding import dumps
from model.checkpoint import META_FILE, WEIGHTS_FILE, Checkpoint, CheckpointError, load_checkpoint, read_metadata
from model.data import swiss_roll
from model.denoiser import DifferentiableNetDenoiser, NetDenoiser
from model.diffusion import SAMPLERS, SamplerSpec, SamplingPlan, q_sample
from model.errors import InvalidParameter
from model.likelihood import FlowGrid
from model.schedule import ScheduleTensors

log = logging.getLogger("swirl.models")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Model names: folder names usable in a URL path and as a metric label."""
RELOAD_WARM_ROWS = 256
"""Rows per sampler when a version loaded beside a serving one warms up (first-call costs only)."""


def discover(directories: list[Path]) -> dict[str, Path]:
    """name → folder for every subfolder holding a checkpoint.json; later directories win."""
    found: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            log.warning("model directory %s does not exist (SWIRL_MODELS)", directory)
            continue
        for child in sorted(directory.iterdir()):
            if child.name.startswith(".") or not child.is_dir() or not (child / META_FILE).is_file():
                continue
            if not NAME.fullmatch(child.name):
                log.warning("skipping %s: a model name is letters, digits, '.', '_' and '-' (at most 64)", child)
                continue
            if child.name in found:
                log.info("model %s: %s replaces %s", child.name, child, found[child.name])
            found[child.name] = child
    return found


def model_sources(settings: Settings) -> dict[str, Path]:
    """The models the settings name: the repository's folders (Settings.model_directories), else SWIRL_CHECKPOINT alone."""
    directories = settings.model_directories()
    if directories is not None:
        return discover(directories)
    path = settings.checkpoint
    name = path.resolve().name
    return {name if NAME.fullmatch(name) else "default": path}


def plan_factory(checkpoint: Checkpoint) -> Callable[[SamplerSpec], SamplingPlan]:
    """The one place a model's sampling plans are built from its checkpoint (its schedule,
    prediction type and, for a distilled student, its trained grids: ``Checkpoint.plan``)."""
    return checkpoint.plan


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _file_digest(path: Path) -> str | None:
    """sha256 of a weights file's bytes: a cheap "has it changed" test (the model id is computed from the tensors)."""
    try:
        return hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass
class ModelVersion:
    """One loaded, verified version of a named model and the answers computed from it once."""

    name: str
    checkpoint: Checkpoint
    served: ServedModel
    denoiser: NetDenoiser
    flow_denoiser: DifferentiableNetDenoiser  # /log_prob's network, differentiated for the divergence
    flow_grid: FlowGrid  # /log_prob's continuous time (model/likelihood.py)
    forward_tables: ScheduleTensors  # CPU tables for /forward
    schedule_json: bytes
    info: dict[str, Any]  # GET /model
    loaded_at: str
    load_seconds: float
    file_digest: str | None  # of the weights file as read before loading (see ``_unchanged``)
    warm_seconds: float = 0.0

    @property
    def id(self) -> str:
        return self.checkpoint.sha256

    def forward(self, t: int, n: int, seed: int) -> np.ndarray:
        """n draws of q(x_t | x_0) on a fresh, seeded swiss roll, (n, 2) float32 (CPU, no network)."""
        norm = self.checkpoint.normalisation
        x0 = torch.from_numpy(norm.normalise(swiss_roll(n, norm.noise, seed=seed))).float()
        noise = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed))
        return q_sample(self.forward_tables, x0, torch.full((n,), t), noise).numpy()


@dataclass
class ModelEntry:
    """A name in the repository: its folder, the version serving (if any) and what happened last."""

    name: str
    path: Path
    current: ModelVersion | None = None
    error: str | None = None  # why it is unavailable
    last_reload: dict[str, Any] | None = None  # {"at", "result", "id"?, "error"?}

    @property
    def state(self) -> str:
        return "available" if self.current is not None else "unavailable"


@dataclass
class ReloadReport:
    """What one reload did, by model name: loaded, unchanged, failed, removed (or kept)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [name for name, r in self.results.items() if r["result"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.results, "failed": self.failed, "seconds": round(self.seconds, 3)}


class ModelRepository:
    """Named models on one engine (through its worker). Reads are lock-free (the entry map
    is replaced, never changed in place); loads and reloads are serialised."""

    def __init__(self, settings: Settings, device: torch.device, metrics: Metrics) -> None:
        self.settings = settings
        self.device = device
        self.metrics = metrics
        self.worker: Worker | None = None
        self.default_name = ""
        self._entries: dict[str, ModelEntry] = {}
        self._reload_lock = threading.Lock()
        self._generation = itertools.count(1)
        self._versions: dict[str, int] = {}  # name → versions in the engine

    # -- reading ----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelEntry]:
        entries = self._entries
        return [entries[name] for name in sorted(entries)]

    def entry(self, name: str | None) -> ModelEntry:
        """The entry for ``name`` (None: the default); InvalidParameter('model') for an unknown name."""
        entries = self._entries
        key = self.default_name if name is None else name
        found = entries.get(key)
        if found is None:
            valid = ", ".join(sorted(entries)) or "none"
            raise InvalidParameter("model", f"unknown model {name!r}; available models: {valid}")
        return found

    def get(self, name: str | None = None) -> ModelVersion:
        """The version serving ``name`` now (422 for an unknown name, 503 for an unavailable one)."""
        entry = self.entry(name)
        version = entry.current
        if version is None:
            raise ServiceUnavailable(f"model {entry.name!r} is unavailable: {entry.error}", "model_unavailable", retry_after_s=30)
        return version

    def served(self, name: str | None) -> ServedModel:
        """The worker's resolver: called under its admission lock."""
        return self.get(name).served

    def versions_loaded(self, name: str) -> int:
        return self._versions.get(name, 0)

    # -- start-up ---------------------------------------------------------------------------

    def attach(self, worker: Worker) -> None:
        self.worker = worker
        worker.on_version_removed = self._version_removed

    def load_all(self) -> None:
        """Load and verify every model (the worker is not running yet); raises CheckpointError
        when the default model fails or no model loads."""
        found = model_sources(self.settings)
        if not found:
            folders = os.pathsep.join(str(d) for d in self.settings.model_directories() or [])
            raise CheckpointError(f"no models found in SWIRL_MODELS={folders!r} (each model is a folder holding {META_FILE})")
        if self.settings.default_model in found:
            self.default_name = self.settings.default_model
        elif len(found) == 1:
            self.default_name = next(iter(found))
        else:
            raise CheckpointError(f"SWIRL_DEFAULT_MODEL={self.settings.default_model!r} is not among the models found: {', '.join(sorted(found))}")
        entries: dict[str, ModelEntry] = {}
        for name, path in found.items():
            entry = entries[name] = ModelEntry(name, path)
            try:
                version = self._load(name, path)
            except CheckpointError as exc:
                if name == self.default_name:
                    raise
                log.error("model %s left out: %s", name, exc)
                entry.error = str(exc)
                self.metrics.model_available.labels(model=name).set(0)
                continue
            self._install(version)
            entry.current = version
            self.metrics.model_available.labels(model=name).set(1)
        self._entries = entries
        log.info("models: %s (default %s)", ", ".join(f"{e.name}={e.state}" for e in self.entries()), self.default_name)

    def warm_up_all(self) -> None:
        """Warm every loaded version up (the default one also measures the engine's throughput)."""
        worker = self._worker()
        for entry in self.entries():
            version = entry.current
            if version is None:
                continue
            started = time.perf_counter()
            worker.warm_up(version.served, rows=None if entry.name == self.default_name else RELOAD_WARM_ROWS)
            version.warm_seconds = time.perf_counter() - started
            log.info("model %s warm in %.3f s (loaded in %.3f s)", entry.name, version.warm_seconds, version.load_seconds)

    # -- reload -----------------------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """Look at the model folders again and switch every new or changed model to its new
        version without dropping a request (see the module docstring). Blocking: call it
        from a thread other than the event loop's and the worker's."""
        with self._reload_lock:
            started = time.perf_counter()
            report = ReloadReport()
            found = model_sources(self.settings)
            for name, path in found.items():
                report.results[name] = self._reload_one(name, path)
            for name in [n for n in self._entries if n not in found]:
                report.results[name] = self._remove(name)
            report.seconds = time.perf_counter() - started
            changed = {n: r["result"] for n, r in report.results.items() if r["result"] != "unchanged"}
            log.info("reload done in %.2f s: %s", report.seconds, changed or "nothing changed")
            return report

    def _reload_one(self, name: str, path: Path) -> dict[str, Any]:
        entry = self._entries.get(name)
        current = entry.current if entry is not None else None
        if current is not None and entry is not None and entry.path == path and self._unchanged(current, path):
            return {"result": "unchanged", "id": current.id}
        if entry is None:
            entry = ModelEntry(name, path)
        worker = self._worker()
        version: ModelVersion | None = None
        try:
            version = self._load(name, path)
            self._install(version)
            started = time.perf_counter()
            worker.warm_up(version.served, rows=RELOAD_WARM_ROWS)
            version.warm_seconds = time.perf_counter() - started
        except Exception as exc:
            if version is not None and worker.engine.has_model(version.served.key):
                worker.switch(lambda: None, retired=version.served.key)
            serving = f"version {current.id[:12]} keeps serving" if current is not None else "the model stays unavailable"
            log.error("reload of model %s failed, %s: %s", name, serving, exc)
            entry.last_reload = {"at": _now(), "result": "failed", "error": str(exc)}
            if current is None:
                entry.error = str(exc)
                self._put(entry)
            self.metrics.model_reloads.labels(model=name, result="failed").inc()
            return {"result": "failed", "error": str(exc), "serving": current.id if current is not None else None}
        new_entry = ModelEntry(name, path, current=version, last_reload={"at": _now(), "result": "loaded", "id": version.id})
        worker.switch(lambda: self._put(new_entry), retired=current.served.key if current is not None else None)
        self.metrics.model_available.labels(model=name).set(1)
        self.metrics.model_reloads.labels(model=name, result="loaded").inc()
        previous = current.id[:12] if current is not None else "none"
        log.info(
            "model %s: now serving %s (was %s; loaded in %.2f s, warm in %.2f s)", name, version.id[:12], previous, version.load_seconds, version.warm_seconds
        )
        return {"result": "loaded", "id": version.id, "previous": current.id if current is not None else None}

    def _remove(self, name: str) -> dict[str, Any]:
        entry = self._entries[name]
        current = entry.current
        if name == self.default_name:
            message = f"the folder {entry.path} is gone; the default model keeps serving its loaded version"
            log.error("model %s: %s", name, message)
            entry.last_reload = {"at": _now(), "result": "failed", "error": message}
            self.metrics.model_reloads.labels(model=name, result="failed").inc()
            return {"result": "failed", "error": message, "serving": current.id if current is not None else None}

        def drop() -> None:
            self._entries = {n: e for n, e in self._entries.items() if n != name}

        self._worker().switch(drop, retired=current.served.key if current is not None else None)
        self.metrics.model_available.labels(model=name).set(0)
        self.metrics.model_reloads.labels(model=name, result="removed").inc()
        log.info("model %s removed (its folder is gone); requests in flight on it finish", name)
        return {"result": "removed", "id": current.id if current is not None else None}

    # -- internals --------------------------------------------------------------------------

    def _worker(self) -> Worker:
        if self.worker is None:
            raise RuntimeError("the repository has no worker (attach() first)")
        return self.worker

    def _put(self, entry: ModelEntry) -> None:
        self._entries = {**self._entries, entry.name: entry}

    @staticmethod
    def _unchanged(current: ModelVersion, path: Path) -> bool:
        try:
            meta = read_metadata(path)
        except CheckpointError:
            return False
        return meta == current.checkpoint.meta and _file_digest(path) == current.file_digest

    def _load(self, name: str, path: Path) -> ModelVersion:
        started = time.perf_counter()
        # before loading: if the folder is swapped in between, the next reload sees a change and loads again
        file_digest = _file_digest(path)
        checkpoint = load_checkpoint(path, self.device)
        key = (name, checkpoint.sha256, next(self._generation))
        served = ServedModel(key=key, make_plan=plan_factory(checkpoint), name=name, id=checkpoint.sha256)
        denoiser = NetDenoiser(checkpoint.net, self.device)
        info = {**model_payload(checkpoint), "name": name}
        return ModelVersion(
            name=name,
            checkpoint=checkpoint,
            served=served,
            denoiser=denoiser,
            flow_denoiser=DifferentiableNetDenoiser(checkpoint.net, self.device),
            flow_grid=FlowGrid.from_schedule(checkpoint.schedule, checkpoint.prediction),
            forward_tables=checkpoint.schedule.to("cpu"),
            schedule_json=dumps(schedule_payload(checkpoint)),
            info=info,
            loaded_at=_now(),
            load_seconds=time.perf_counter() - started,
            file_digest=file_digest,
        )

    def _install(self, version: ModelVersion) -> None:
        self._worker().add_version(version.served, version.denoiser)
        self._versions[version.name] = self._versions.get(version.name, 0) + 1
        self.metrics.model_versions.labels(model=version.name).set(self._versions[version.name])

    def _version_removed(self, key: Any) -> None:
        name = key[0] if isinstance(key, tuple) else str(key)
        self._versions[name] = max(0, self._versions.get(name, 0) - 1)
        self.metrics.model_versions.labels(model=name).set(self._versions[name])


def schedule_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    s = checkpoint.schedule
    return {
        "timesteps": s.timesteps,
        "kind": s.config.kind,
        "beta_start": float(s.betas[0]),
        "beta_end": float(s.betas[-1]),
        "alpha_bar_final": s.alpha_bar_final,
        "beta": s.betas.tolist(),
        "alpha": s.alphas.tolist(),
        "alpha_bar": s.alpha_bars.tolist(),
        "posterior_variance": s.posterior_variance.tolist(),
        "posterior_mean_coef_x0": s.posterior_mean_coef_x0.tolist(),
        "posterior_mean_coef_xt": s.posterior_mean_coef_xt.tolist(),
    }


def model_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    meta, norm = checkpoint.meta, checkpoint.normalisation
    return {
        "id": checkpoint.sha256,
        "name": checkpoint.path.name,
        "format_version": meta["format_version"],
        "net": checkpoint.net_config.to_dict(),
        "parameter_count": checkpoint.net.parameter_count(),
        "schedule": {**checkpoint.schedule.config.to_dict(), "alpha_bar_final": checkpoint.schedule.alpha_bar_final},
        "data": {"noise": norm.noise, "mean": list(norm.mean), "scale": norm.scale},
        "training": meta.get("training", {}),
        "evaluation": meta.get("evaluation", {}),
        "samplers": [s for s in SAMPLERS if s != "student" or checkpoint.student_grids],
        "condition": checkpoint.condition_info,  # guided models: kind, range, null_probability, default_guidance; null otherwise
        "student": checkpoint.student,  # distilled students: teacher, grids, method; null otherwise
        "student_steps": sorted(checkpoint.student_grids),  # the step counts the student sampler takes
        "endpoints": model_endpoints(checkpoint),
        "device": str(checkpoint.device),
    }


def model_endpoints(checkpoint: Checkpoint) -> list[str]:
    """What a model answers: every model samples; only a model with a velocity at every step (not a
    distilled student: ``model.likelihood.check_density_model``) has a density and a score."""
    return ["/sample", "/forward"] + ([] if checkpoint.student_grids else ["/log_prob", "/score"])


def listing(repository: ModelRepository, entry: ModelEntry) -> dict[str, Any]:
    """One model as ``GET /models`` shows it."""
    version = entry.current
    item: dict[str, Any] = {
        "name": entry.name,
        "id": version.id if version is not None else None,
        "state": entry.state,
        "default": entry.name == repository.default_name,
    }
    if version is not None:
        info = version.info
        item.update(
            schedule=info["schedule"],
            network=info["net"],
            parameter_count=info["parameter_count"],
            evaluation=info["evaluation"],
            endpoints=info["endpoints"],
            condition=info["condition"],
            loaded_at=version.loaded_at,
            load_seconds=round(version.load_seconds, 4),
            warm_seconds=round(version.warm_seconds, 4),
        )
    item["versions_loaded"] = repository.versions_loaded(entry.name)
    item["error"] = entry.error if version is None else None
    item["last_reload"] = entry.last_reload
    return item
