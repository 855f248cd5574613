"""Request ids and default seeds: a per-process generator, reseeded after fork (a plain sync
test module: the edge tests' module-wide asyncio mark would not fit it)."""

from __future__ import annotations

import os

from app.process import randomness


def test_generated_ids_and_seeds_are_fresh_in_every_forked_process() -> None:
    """Ids and default seeds come from a per-process generator, reseeded after fork: a worker
    process never repeats its parent's (or a sibling's) sequence."""
    ids = {randomness.request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, then exit at once
        os.write(write, randomness.request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read), os.close(write)
    assert child != randomness.request_id() and child not in ids
    assert 0 <= randomness.seed32() < 2**32
