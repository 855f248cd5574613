"""The response cache: the LRU by bytes on its own, then through HTTP (hits for GET and POST
alike, per format, ETag and 304 without sampling, metrics). Across a reload under load: the
reload test in test_models.py, whose repeated seeded requests are mostly cache hits."""

from __future__ import annotations

import io

import numpy as np

from app.metrics import Metrics
from app.serving.response_cache import ENTRY_OVERHEAD, AnswerKey, CachedAnswer, ResponseCache
from app.wire.conditional import entity_tags, none_match
from tests.app.conftest import AppFactory, metric, metric_samples

SEEDED = "/sample?n=300&seed=5&sampler=ddim&steps=10"


def key(version: str, seed: int) -> AnswerKey:
    return AnswerKey(version, "application/json", "", (("n", 1), ("seed", seed)))


def answer(size: int) -> CachedAnswer:
    return CachedAnswer(b"x" * (size - ENTRY_OVERHEAD), "application/json", {})


def test_the_lru_evicts_the_least_recently_used_by_bytes_and_drops_a_version() -> None:
    metrics = Metrics()
    cache = ResponseCache(4000, metrics)
    for seed in range(4):
        cache.put(key("v1", seed), answer(1000))
    assert len(cache) == 4 and cache.bytes == 4000
    assert cache.get(key("v1", 0)) is not None  # now the most recently used
    cache.put(key("v2", 9), answer(1000))
    assert cache.get(key("v1", 1)) is None  # the least recently used went
    assert cache.get(key("v1", 0)) is not None and cache.bytes == 4000
    cache.put(key("v2", 10), answer(1001 + ENTRY_OVERHEAD))  # over a quarter of the cache: not kept
    assert cache.get(key("v2", 10)) is None
    assert cache.drop_version("v1") == 3 and cache.versions == {"v2"} and cache.bytes == 1000
    assert metric(metric_samples(metrics.exposition().decode()), "swirl_response_cache_bytes") == 1000
    off = ResponseCache(0, Metrics())
    off.put(key("v1", 0), answer(600))
    assert off.get(key("v1", 0)) is None and len(off) == 0


def test_if_none_match_parses_lists_weak_tags_and_ignores_malformed_headers() -> None:
    etag = '"abc"'
    assert none_match('"abc"', etag) and none_match('W/"abc"', etag) and none_match('"x", W/"abc"', etag) and none_match("*", etag)
    assert not none_match('"abd"', etag) and not none_match(None, etag)
    for malformed in ("abc", '"abc', '"abc" "x"', ",", '"a"b"', ""):
        assert entity_tags(malformed) is None and not none_match(malformed, etag), malformed
    assert entity_tags('"a,b", "c"') == ['"a,b"', '"c"']  # commas may sit inside a tag


async def test_a_repeated_seeded_request_is_served_from_the_cache_for_get_and_post_alike(running_app: AppFactory) -> None:
    async with running_app() as r:
        first = await r.http.get(SEEDED)
        before = metric_samples((await r.http.get("/metrics")).text)
        again = await r.http.get(SEEDED + "&priority=high&timeout_ms=30000")  # when, not what: the same answer
        posted = await r.http.post("/sample", json={"n": 300, "seed": 5, "sampler": "ddim", "steps": 10})
        after = metric_samples((await r.http.get("/metrics")).text)
        npy = await r.http.get(SEEDED, headers={"Accept": "application/x-npy"})  # another format: its own entry
        npy_again = await r.http.get(SEEDED, headers={"Accept": "application/x-npy"})
        unseeded = await r.http.get("/sample?n=300&sampler=ddim&steps=10")
        final = metric_samples((await r.http.get("/metrics")).text)
    assert "cache" not in first.headers["server-timing"] and "compute" in first.headers["server-timing"]
    for hit in (again, posted):
        assert hit.status_code == 200 and hit.content == first.content
        assert hit.headers["server-timing"] == 'cache;desc="hit"'
        assert hit.headers["swirl-seed"] == "5" and hit.headers["content-type"] == first.headers["content-type"]
    assert metric(after, "swirl_engine_ticks_total") == metric(before, "swirl_engine_ticks_total")  # no sampling
    assert metric(after, "swirl_response_cache_hits_total") - metric(before, "swirl_response_cache_hits_total") == 2
    assert "cache" not in npy.headers["server-timing"] and npy_again.headers["server-timing"] == 'cache;desc="hit"'
    assert npy_again.content == npy.content and npy.content != first.content
    points = np.load(io.BytesIO(npy.content))
    np.testing.assert_array_equal(points, np.asarray(first.json()["points"], dtype=np.float32))
    assert "etag" not in unseeded.headers and unseeded.headers["cache-control"] == "no-store"
    assert metric(final, "swirl_response_cache_misses_total") == 2  # the first JSON and the first npy; unseeded ones are never looked up


async def test_seeded_get_answers_carry_a_strong_etag_and_if_none_match_gets_304_without_sampling(running_app: AppFactory) -> None:
    async with running_app(response_cache_bytes=0) as r:  # the cache off: 304 needs no stored answer
        first = await r.http.get(SEEDED)
        etag = first.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
        before = metric_samples((await r.http.get("/metrics")).text)
        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            response = await r.http.get(SEEDED, headers={"If-None-Match": header})
            assert response.status_code == 304 and response.content == b"", header
            assert response.headers["etag"] == etag and response.headers["cache-control"] == first.headers["cache-control"]
        after = metric_samples((await r.http.get("/metrics")).text)
        assert metric(after, "swirl_engine_ticks_total") == metric(before, "swirl_engine_ticks_total")
        for header in ('"other"', "not-a-tag", '"unterminated'):  # no match, or malformed (ignored): the full answer
            response = await r.http.get(SEEDED, headers={"If-None-Match": header})
            assert response.status_code == 200 and response.content == first.content, header
        assert (await r.http.get(SEEDED.replace("seed=5", "seed=6"))).headers["etag"] != etag
        assert (await r.http.get(SEEDED, headers={"Accept": "application/x-npy"})).headers["etag"] != etag
        posted = await r.http.post("/sample", json={"n": 300, "seed": 5, "sampler": "ddim", "steps": 10}, headers={"If-None-Match": etag})
        assert posted.status_code == 200 and "etag" not in posted.headers  # POST answers are not HTTP-cacheable
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_response_cache_hits_total") == 0 and metric(samples, "swirl_response_cache_misses_total") == 0
