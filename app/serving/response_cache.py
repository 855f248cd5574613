"""The response cache: a seeded answer is a pure function of (model version, parameters, seed,
format), so the encoded body is kept and served again without sampling (Triton's response cache).

Keys name the model *version* (the engine key: name, weights sha256, load generation), so a
reload can never serve an old version's answer: lookups use the current version's key, answers
are stored under the version that computed them (and only while it is still the current one),
and a version's entries are dropped when it leaves the engine. Least recently used entries go
first once the bodies exceed ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from app.metrics import Metrics

ENTRY_OVERHEAD = 512  # bytes counted per entry besides its body: key, headers, bookkeeping


@dataclass(frozen=True)
class CachedAnswer:
    body: bytes
    media_type: str
    headers: Mapping[str, str]  # Swirl-*, Content-Encoding: everything but timing

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD


@dataclass(frozen=True)
class AnswerKey:
    """What a seeded answer's bytes depend on: the version, the format, the canonical parameters."""

    version: Hashable  # ServedModel.key
    media_type: str
    content_encoding: str  # "" or "gzip"
    parameters: tuple[tuple[str, object], ...]  # sorted (name, value): n, seed, sampler, steps, eta, trajectory_every, space

    def etag(self, model_id: str) -> str:
        """A strong entity tag (RFC 9110 §8.8.3): the model's weights and the canonical parameters,
        hashed, with the format and encoding (each a different representation)."""
        text = repr((model_id, self.media_type, self.content_encoding, self.parameters))
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


class ResponseCache:
    """A thread-safe LRU of encoded answers, bounded by bytes; ``max_bytes = 0`` turns it off."""

    def __init__(self, max_bytes: int, metrics: Metrics) -> None:
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._entries: OrderedDict[AnswerKey, CachedAnswer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def versions(self) -> set[Hashable]:
        """The model versions whose answers are held."""
        with self._lock:
            return {key.version for key in self._entries}

    def get(self, key: AnswerKey) -> CachedAnswer | None:
        if not self.enabled:
            return None
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
        (self.metrics.cache_hits if answer is not None else self.metrics.cache_misses).inc()
        return answer

    def put(self, key: AnswerKey, answer: CachedAnswer) -> None:
        """Keep ``answer``, evicting the least recently used; an answer over a quarter of the
        cache is not kept (it would push out many others for one)."""
        if not self.enabled or answer.size > self.max_bytes // 4:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous.size
            self._entries[key] = answer
            self._bytes += answer.size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
            self.metrics.cache_bytes.set(self._bytes)

    def drop_version(self, version: Hashable) -> int:
        """Forget every answer of a model version (it left the engine); returns how many."""
        with self._lock:
            gone = [key for key in self._entries if key.version == version]
            for key in gone:
                self._bytes -= self._entries.pop(key).size
            self.metrics.cache_bytes.set(self._bytes)
        return len(gone)
