"""Request ids and default seeds without a system call per request.

``secrets`` reads ``os.urandom``, and CPython releases the GIL around that ``getrandom``
call. On the event loop, next to the engine's thread, giving the GIL up for one microsecond
costs a wait of up to a switch interval (``SWIRL_SWITCH_INTERVAL_MS``) to get it back: a
profile of 64 concurrent small requests put 4.6% of the process's samples there. Neither a
request id nor a default seed is a secret (both are sent back in the answer), so they come
from a Mersenne Twister seeded once per process from ``os.urandom`` and reseeded in every
forked child, so no two server processes share a sequence.
"""

from __future__ import annotations

import os
import random

_random = random.Random()  # seeded from os.urandom
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


def request_id() -> str:
    """A new 128-bit request id, 32 hex digits."""
    return f"{_random.getrandbits(128):032x}"


def seed32() -> int:
    """A seed for a request that did not give one: 32 random bits."""
    return _random.getrandbits(32)
