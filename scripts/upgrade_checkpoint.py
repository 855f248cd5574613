"""Re-publish checkpoints in the current format, with the same tensors bit for bit.

    python scripts/upgrade_checkpoint.py checkpoints/swiss-roll checkpoints/swiss-roll-cosine

Format 1 recorded the sha256 of the weights *file* as the model id; format 2 records the
canonical id (``model.checkpoint.weights_id``: tensors' names, dtypes, shapes and bytes),
which does not change with the safetensors header's key order. The old id is verified
first; the new checkpoint keeps every section of checkpoint.json and is written atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from model.checkpoint import FORMAT_VERSION, WEIGHTS_FILE, load_checkpoint, read_metadata, save_checkpoint


def upgrade(directory: Path) -> tuple[str, str]:
    """(old recorded id, new id); raises if the checkpoint does not verify or the tensors change."""
    before = load_file(directory / WEIGHTS_FILE)
    checkpoint = load_checkpoint(directory)  # verifies the recorded id, whatever the format
    meta = read_metadata(directory)
    standard = {"format_version", "weights_sha256", "net", "schedule", "data", "training", "evaluation"}
    extra = {key: value for key, value in meta.items() if key not in standard}  # e.g. a student's section
    new_id = save_checkpoint(
        directory, checkpoint.net, checkpoint.schedule.config, checkpoint.normalisation, meta["training"], meta.get("evaluation"), extra=extra or None
    )
    after = load_file(directory / WEIGHTS_FILE)
    if before.keys() != after.keys() or not all(torch.equal(before[k], after[k]) for k in before):
        raise RuntimeError(f"{directory}: the tensors changed while re-publishing")
    return meta["weights_sha256"], new_id


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint directories to re-publish in place")
    for directory in p.parse_args().checkpoints:
        old, new = upgrade(directory)
        print(f"{directory}: format {FORMAT_VERSION}, id {old[:12]}… → {new}")


if __name__ == "__main__":
    main()
