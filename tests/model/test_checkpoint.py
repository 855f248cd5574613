"""Checkpoint round trip, tamper detection, clear errors and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import checkpoint as checkpoint_module
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file, update_metadata, weights_id
from model.data import Normalisation
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample
from model.net import EpsilonMLP, NetConfig
from model.schedule import ScheduleConfig

NORM = Normalisation(noise=0.5, mean=(0.1, -0.2), scale=7.5)


def write_tiny(path: Path, seed: int = 0) -> EpsilonMLP:
    torch.manual_seed(seed)
    net = EpsilonMLP(NetConfig(hidden=16, depth=2, time_embedding_dim=8), 50)
    save_checkpoint(path, net, ScheduleConfig(), NORM, training={"steps": 0})
    return net


def samples(ck_net: torch.nn.Module, schedule_T: int, seed: int = 3) -> torch.Tensor:
    from model.schedule import Schedule

    plan = make_plan(Schedule.from_config(ScheduleConfig(timesteps=schedule_T)), SamplerSpec("ddpm"))
    assert isinstance(ck_net, EpsilonMLP)
    return sample(NetDenoiser(ck_net, "cpu"), plan, 50, seed).x0


def test_round_trip_rebuilds_an_identical_model(tmp_path: Path) -> None:
    net = write_tiny(tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck", "cpu")
    assert loaded.net_config == net.config
    assert loaded.normalisation == NORM
    assert loaded.schedule.timesteps == 50
    assert loaded.sha256 == weights_id(net.state_dict())
    assert torch.equal(samples(net.eval(), 50), samples(loaded.net, 50))
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    assert meta["format_version"] == 2 and meta["weights_sha256"] == loaded.sha256
    assert set(meta) >= {"net", "schedule", "data", "training", "evaluation"}


def test_tampered_weights_fail_to_load(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(tmp_path / "ck")


def test_truncated_weights_fail_to_load(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_valid_hash_but_garbage_bytes_fail_clearly(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    update_metadata(tmp_path / "ck", weights_sha256=sha256_file(weights))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_the_id_ignores_the_safetensors_header_but_not_the_tensors(tmp_path: Path) -> None:
    # The same tensors written with the metadata keys in either order (as safetensors' hash map
    # may do) and with no metadata at all: three different files, one id, all loadable.
    write_tiny(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    state = load_file(weights)
    recorded = load_checkpoint(tmp_path / "ck").sha256
    file_hashes = set()
    for metadata in ({"format": "swirl", "format_version": "1"}, {"format_version": "1", "format": "swirl"}, None):
        save_file(state, str(weights), metadata=metadata)
        file_hashes.add(sha256_file(weights))
        assert load_checkpoint(tmp_path / "ck").sha256 == recorded
    assert len(file_hashes) >= 2
    # and the id does see names, shapes, dtypes and every byte
    first = next(iter(state))
    variants = [
        {**{k: v for k, v in state.items() if k != first}, first + "_renamed": state[first]},
        {**state, first: state[first].reshape(-1)},
        {**state, first: state[first].double()},
        {**state, first: state[first].clone().view(-1).index_fill_(0, torch.tensor([0]), 0.123).view_as(state[first])},
    ]
    assert len({recorded, *(weights_id(v) for v in variants)}) == 1 + len(variants)


def test_a_format_1_checkpoint_is_verified_by_its_file_hash_and_gets_the_canonical_id(tmp_path: Path) -> None:
    net = write_tiny(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    update_metadata(tmp_path / "ck", format_version=1, weights_sha256=sha256_file(weights))
    assert load_checkpoint(tmp_path / "ck").sha256 == weights_id(net.state_dict())
    update_metadata(tmp_path / "ck", weights_sha256=weights_id(net.state_dict()))  # v1 recorded the file's hash
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("missing,match", [("model.safetensors", "missing"), ("checkpoint.json", "missing")])
def test_missing_files_fail_clearly(tmp_path: Path, missing: str, match: str) -> None:
    write_tiny(tmp_path / "ck")
    (tmp_path / "ck" / missing).unlink()
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "ck")


def test_missing_directory_and_unknown_version_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    write_tiny(tmp_path / "ck")
    update_metadata(tmp_path / "ck", format_version=99)
    with pytest.raises(CheckpointError, match="unknown checkpoint format version 99"):
        load_checkpoint(tmp_path / "ck")


def test_config_that_does_not_match_the_weights_fails_clearly(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    update_metadata(tmp_path / "ck", net={**meta["net"], "hidden": 32})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "ck")


def test_overwriting_replaces_the_whole_checkpoint(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ck", seed=0)
    first = load_checkpoint(tmp_path / "ck").sha256
    write_tiny(tmp_path / "ck", seed=1)
    assert load_checkpoint(tmp_path / "ck").sha256 != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no staging leftovers


def test_a_crash_mid_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny(tmp_path / "ck", seed=0)
    before = load_checkpoint(tmp_path / "ck").sha256

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "_write_file_synced", crash)
    with pytest.raises(KeyboardInterrupt):
        write_tiny(tmp_path / "ck", seed=1)
    assert load_checkpoint(tmp_path / "ck").sha256 == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_publish_falls_back_when_atomic_exchange_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny(tmp_path / "ck", seed=0)
    monkeypatch.setattr(checkpoint_module, "_exchange", lambda a, b: False)
    write_tiny(tmp_path / "ck", seed=1)
    assert load_checkpoint(tmp_path / "ck").sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
