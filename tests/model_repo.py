"""Helpers for the model-repository tests: variants of a checkpoint, a corrupted copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from model.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint


def make_variant(source: Path, target: Path, seed: int, scale: float = 0.05) -> str:
    """Publish (atomically, as ``model.train`` does) a copy of ``source`` whose weights are
    perturbed by seeded noise: a real, different model. Returns its sha256."""
    checkpoint = load_checkpoint(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in checkpoint.net.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return save_checkpoint(target, checkpoint.net, checkpoint.schedule.config, checkpoint.normalisation, {"variant_of": source.name, "seed": seed})


def copy_model(source: Path, target: Path) -> None:
    shutil.copytree(source, target)


def corrupt(directory: Path) -> None:
    """Flip bytes in the weights so that their sha256 no longer matches checkpoint.json."""
    path = directory / WEIGHTS_FILE
    blob = bytearray(path.read_bytes())
    blob[-16:] = bytes(b ^ 0xFF for b in blob[-16:])
    path.write_bytes(bytes(blob))
