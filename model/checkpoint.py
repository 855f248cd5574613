"""Self-describing checkpoints: ``model.safetensors`` (weights only) + ``checkpoint.json``.

``checkpoint.json`` records the format version, the network and schedule configs, the
data constants, a training summary, evaluation results and the model id; a conditioned
model also its ``condition`` (kind, range of u, probability of the null condition in training).
``load_checkpoint`` rebuilds everything from the directory alone, verifying the id;
nothing is ever unpickled. Saving is atomic: a crash or Ctrl-C mid-save leaves the
previous checkpoint intact.

The model id (``weights_sha256``) is the sha256 of a canonical form of the weights, not
of the file: the safetensors header stores its ``__metadata__`` keys in whatever order
the writer's hash map yields, so the same tensors can give files with different bytes.
The canonical form depends only on each tensor's name, dtype, shape and bytes
(``weights_id``), so the same training gives the same id on every run and machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file

from model.data import Normalisation
from model.diffusion import SamplerSpec, SamplingPlan, make_plan
from model.net import CONDITION_RANGE, EpsilonMLP, NetConfig
from model.schedule import Schedule, ScheduleConfig

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE = 0.25  # w for a request with u and no guidance, unless the checkpoint records its own measured best
FORMAT_VERSION = 2  # 2: weights_sha256 is the canonical weights id; 1: it was the file's sha256
READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, tampered with or of an unknown format."""


@dataclass
class Checkpoint:
    """Everything needed to sample: the network (eval mode, on ``device``), schedule and data constants."""

    path: Path
    net: EpsilonMLP
    schedule: Schedule
    normalisation: Normalisation
    sha256: str  # the model id: weights_id() of the tensors
    device: torch.device
    meta: dict[str, Any] = field(repr=False)  # the whole checkpoint.json

    @property
    def net_config(self) -> NetConfig:
        return self.net.config

    @property
    def prediction(self) -> str:
        """What the network outputs: "eps", "v" or "x0" (``model.prediction``)."""
        return self.net.config.prediction

    @property
    def condition(self) -> dict[str, Any] | None:
        """A conditioned model's ``condition`` section (kind, range, null probability), None for an unconditional one."""
        section = self.meta.get("condition")
        return section if isinstance(section, dict) and self.net.config.conditioned else None

    @property
    def default_guidance(self) -> float:
        """The guidance weight a request with u gets when it names none: the checkpoint's measured
        ``condition.default_guidance`` (``model.evaluate --guidance``), else ``DEFAULT_GUIDANCE``."""
        value = (self.condition or {}).get("default_guidance", DEFAULT_GUIDANCE)
        return float(value)

    @property
    def condition_info(self) -> dict[str, Any] | None:
        """``condition`` as the service shows it: the record with its default guidance filled in."""
        return None if self.condition is None else {**self.condition, "default_guidance": self.default_guidance}

    @property
    def student(self) -> dict[str, Any] | None:
        """A distilled student's section (teacher, grids, method), None for an ordinary model."""
        section = self.meta.get("student")
        return section if isinstance(section, dict) else None

    @property
    def student_grids(self) -> dict[int, list[int]]:
        """Step count → the grid T = τ_1 > … > τ_S it was distilled on; empty unless a student."""
        return parse_student_grids(self.student, self.schedule.timesteps) if self.student else {}

    def plan(self, spec: SamplerSpec) -> SamplingPlan:
        """This model's plan for ``spec``: its prediction type and (for a student) its grids folded in."""
        return make_plan(self.schedule, spec, prediction=self.prediction, student_grids=self.student_grids or None)


def condition_record(net_config: NetConfig, null_probability: float) -> dict[str, Any]:
    """checkpoint.json's ``condition`` section for a conditioned network: what u is and how ∅ was trained."""
    return {"kind": net_config.condition, "range": list(CONDITION_RANGE), "null_probability": null_probability}


def check_condition_record(net_config: NetConfig, section: object) -> None:
    """A conditioned net needs a ``condition`` section of its kind; an unconditional one may not have one."""
    if not net_config.conditioned:
        if section is not None:
            raise ValueError("a condition section for a network without a condition input")
        return
    if not isinstance(section, dict) or section.get("kind") != net_config.condition:
        raise ValueError(f"condition must be an object with kind {net_config.condition!r}")
    if section.get("range") != list(CONDITION_RANGE):
        raise ValueError(f"condition.range must be {list(CONDITION_RANGE)}")
    probability = section.get("null_probability")
    if not isinstance(probability, int | float) or not 0.0 < probability < 1.0:
        raise ValueError("condition.null_probability must be a number in (0, 1)")


def parse_student_grids(section: dict[str, Any] | None, timesteps: int) -> dict[int, list[int]]:
    """Read and check ``student.grids`` ({"4": [50, 28, 12, 3], ...}); ValueError when malformed."""
    if not section:
        return {}
    raw = section.get("grids")
    if not isinstance(raw, dict) or not raw:
        raise ValueError("student.grids must be a non-empty object of step count → grid")
    grids: dict[int, list[int]] = {}
    for key, grid in raw.items():
        steps = int(key)
        if not isinstance(grid, list) or len(grid) != steps or not all(isinstance(t, int) for t in grid):
            raise ValueError(f"student.grids[{key!r}] must list {steps} integer steps")
        if grid[0] != timesteps or grid[-1] < 1 or any(a <= b for a, b in zip(grid, grid[1:])):
            raise ValueError(f"student.grids[{key!r}] must fall strictly from T = {timesteps} to at least 1, got {grid}")
        grids[steps] = grid
    return grids


# safetensors' dtype names: stable across torch versions, unlike str(torch.dtype)
_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_ID_PREFIX = b"swirl-weights-id/1\n"


def weights_id(state: Mapping[str, torch.Tensor]) -> str:
    """The model id: sha256 over the tensors in name order, each as its header then its bytes.

    ``header = json({"name", "dtype", "shape"}) + "\\n"``, then the tensor's C-contiguous
    bytes (little-endian, as on every platform torch ships wheels for) (whose length the header's dtype and shape fix, so the stream is
    unambiguous). Nothing else enters: not the file's layout, not its metadata, not the
    device or the thread count that produced the tensors.
    """
    digest = hashlib.sha256(_ID_PREFIX)
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        if tensor.dtype not in _DTYPE_NAMES:
            raise ValueError(f"{name}: dtype {tensor.dtype} has no canonical name")
        header = {"name": name, "dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape)}
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE). False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _publish_directory(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` directory to ``target`` without a window where neither is whole."""
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the previous checkpoint
    else:  # filesystems without RENAME_EXCHANGE: keep the old one until the new one is in place
        backup = target.with_name(f".{target.name}.previous")
        shutil.rmtree(backup, ignore_errors=True)
        os.rename(target, backup)
        os.rename(staging, target)
        shutil.rmtree(backup)
    _fsync_dir(target.parent)


def save_checkpoint(
    directory: str | Path,
    net: EpsilonMLP,
    schedule_config: ScheduleConfig,
    normalisation: Normalisation,
    training: dict[str, Any],
    evaluation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``directory`` atomically; returns the model id (``weights_id`` of the saved tensors).

    ``extra`` adds top-level sections (a distilled student's ``student`` section).
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; a checkpoint is meant to be shared
    try:
        state = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in net.state_dict().items()}
        weights_path = staging / WEIGHTS_FILE
        # one metadata key: with two, safetensors writes them in hash-map order and the file's bytes vary
        save_file(state, str(weights_path), metadata={"format": "swirl"})
        with open(weights_path, "rb") as handle:
            os.fsync(handle.fileno())
        digest = weights_id(load_safetensors_bytes(weights_path.read_bytes()))  # of what was written
        meta = {
            "format_version": FORMAT_VERSION,
            "weights_sha256": digest,
            "net": net.config.to_dict(),
            "schedule": schedule_config.to_dict(),
            "data": {"noise": normalisation.noise, "mean": list(normalisation.mean), "scale": normalisation.scale},
            "training": training,
            "evaluation": evaluation or {},
            **(extra or {}),
        }
        _write_file_synced(staging / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        _fsync_dir(staging)
        _publish_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("saved checkpoint %s (id %s)", target, digest[:12])
    return digest


def update_metadata(directory: str | Path, **sections: Any) -> None:
    """Replace top-level sections of ``checkpoint.json`` (e.g. ``evaluation``) atomically."""
    path = Path(directory) / META_FILE
    meta = read_metadata(directory)
    meta.update(sections)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".json", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write((json.dumps(meta, indent=2) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify(weights_path: Path, actual: str, expected: object) -> None:
    if actual != expected:
        raise CheckpointError(
            f"{weights_path}: sha256 mismatch (weights {actual[:16]}…, checkpoint.json records {str(expected)[:16]}…); the weights are corrupt or were changed"
        )


def read_metadata(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({META_FILE} must sit next to {WEIGHTS_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild network, schedule and data constants from a checkpoint directory alone.

    Raises ``CheckpointError`` with a clear message on a missing file, an unknown format
    version, weights whose id does not match the recorded one ("sha256 mismatch"), or
    weights that do not match the recorded config. Format 1 checkpoints (whose recorded
    hash is the file's sha256) are verified against the file and then carry the canonical id.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    meta = read_metadata(directory)
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{directory}: unknown checkpoint format version {version!r} (this Swirl reads {', '.join(map(str, READABLE_VERSIONS))})")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    blob = weights_path.read_bytes()
    expected = meta.get("weights_sha256")
    if version == 1:
        _verify(weights_path, hashlib.sha256(blob).hexdigest(), expected)
    try:
        state = load_safetensors_bytes(blob)
    except SafetensorError as exc:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({exc})") from exc
    try:
        digest = weights_id(state)
    except ValueError as exc:
        raise CheckpointError(f"{weights_path}: {exc}") from exc
    if version != 1:
        _verify(weights_path, digest, expected)
    try:
        net_config = NetConfig.from_dict(meta["net"])
        schedule_config = ScheduleConfig.from_dict(meta["schedule"])
        data = meta["data"]
        normalisation = Normalisation(noise=float(data["noise"]), mean=(float(data["mean"][0]), float(data["mean"][1])), scale=float(data["scale"]))
        student = meta.get("student")
        if student is not None and not isinstance(student, dict):
            raise ValueError("student must be an object")
        parse_student_grids(student, schedule_config.timesteps)
        check_condition_record(net_config, meta.get("condition"))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{directory / META_FILE}: incomplete or invalid metadata ({exc!r})") from exc
    net = EpsilonMLP(net_config, schedule_config.timesteps)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path}: weights do not match the recorded network config ({exc})") from exc
    if not all(bool(torch.isfinite(t).all()) for t in state.values()):
        raise CheckpointError(f"{weights_path}: weights contain NaN or inf")
    torch_device = torch.device(device)
    net = net.to(torch_device).eval().requires_grad_(False)
    log.info("loaded checkpoint %s (id %s) on %s", directory, digest[:12], torch_device)
    return Checkpoint(
        path=directory,
        net=net,
        schedule=Schedule.from_config(schedule_config),
        normalisation=normalisation,
        sha256=digest,
        device=torch_device,
        meta=meta,
    )
