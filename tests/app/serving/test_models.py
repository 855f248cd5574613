"""Several models in one service: discovery and naming, choosing a model, per-model answers,
reload without downtime (in-process), the admin route's token, per-model metrics."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.serving.models import discover
from model.checkpoint import CheckpointError, load_checkpoint, read_metadata
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample
from tests.app.conftest import Running, assert_names_field, metric, metric_samples, worker_held
from tests.conftest import make_settings
from tests.model_repo import copy_model, corrupt, make_variant

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def repo(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A repository with two real models: ``alpha`` (the tiny checkpoint) and ``beta`` (a variant)."""
    root = tmp_path / "models"
    root.mkdir()
    copy_model(tiny_checkpoint, root / "alpha")
    make_variant(tiny_checkpoint, root / "beta", seed=1)
    return root


@asynccontextmanager
async def serving(tiny_checkpoint: Path, **overrides: Any) -> AsyncIterator[Running]:
    app = create_app(make_settings(tiny_checkpoint, **overrides))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as http:
            yield Running(app, http)


def expected_points(checkpoint_dir: Path, n: int, seed: int, spec: SamplerSpec) -> np.ndarray:
    """The same request computed in-process from the checkpoint alone (the engine, one request)."""
    checkpoint = load_checkpoint(checkpoint_dir)
    plan = make_plan(checkpoint.schedule, spec)
    return sample(NetDenoiser(checkpoint.net, "cpu"), plan, n, seed).x0.numpy().astype(np.float64)


# -- discovery and naming -------------------------------------------------------------------


def test_discovery_names_models_by_folder_and_skips_what_is_not_a_model(repo: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    (repo / "notes").mkdir()  # no checkpoint.json
    copy_model(tiny_checkpoint, repo / ".alpha.tmp-abc")  # a training run's staging folder
    copy_model(tiny_checkpoint, repo / "bad name")  # not a usable name
    (repo / "README").write_text("not a folder")
    found = discover([repo])
    assert sorted(found) == ["alpha", "beta"]
    assert found["alpha"] == repo / "alpha"
    # a later directory replaces a name from an earlier one
    other = tmp_path / "volume"
    make_variant(tiny_checkpoint, other / "alpha", seed=7)
    found = discover([repo, other, tmp_path / "missing"])
    assert found["alpha"] == other / "alpha" and found["beta"] == repo / "beta"


async def test_models_lists_every_model_with_its_facts(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="beta") as r:
        body = (await r.http.get("/models")).json()
        assert body["default"] == "beta" and body["process"] == os.getpid()
        by_name = {m["name"]: m for m in body["models"]}
        assert sorted(by_name) == ["alpha", "beta"]
        for name in ("alpha", "beta"):
            meta = read_metadata(repo / name)
            item = by_name[name]
            assert item["id"] == meta["weights_sha256"] and item["state"] == "available"
            assert item["network"] == meta["net"] and item["parameter_count"] > 0
            assert item["schedule"]["timesteps"] == meta["schedule"]["timesteps"]
            assert item["versions_loaded"] == 1 and item["error"] is None
            assert item["load_seconds"] > 0 and item["warm_seconds"] > 0
        assert by_name["beta"]["default"] and not by_name["alpha"]["default"]
        assert by_name["alpha"]["id"] != by_name["beta"]["id"]
        one = await r.http.get("/models/alpha")
        assert one.status_code == 200 and one.json() == by_name["alpha"]
        # a request without `model` gets the default
        plain = (await r.http.get("/sample", params={"n": 3, "seed": 1})).json()
        assert plain["model_name"] == "beta" and plain["model"] == by_name["beta"]["id"]


async def test_single_checkpoint_still_works_named_by_its_folder(tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint) as r:
        body = (await r.http.get("/models")).json()
        assert body["default"] == tiny_checkpoint.name
        assert [m["name"] for m in body["models"]] == [tiny_checkpoint.name]
        answer = (await r.http.get("/sample", params={"n": 3, "seed": 1, "model": tiny_checkpoint.name})).json()
        assert answer["model"] == read_metadata(tiny_checkpoint)["weights_sha256"]


async def test_default_model_must_exist_when_there_are_several(repo: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="SWIRL_DEFAULT_MODEL"):
        async with serving(tiny_checkpoint, models=str(repo), default_model="gamma"):
            pass


# -- choosing a model -----------------------------------------------------------------------

UNKNOWN_CASES = [
    ("GET", "/sample", {"n": 3, "model": "gamma"}),
    ("POST", "/sample", {"n": 3, "model": "gamma"}),
    ("GET", "/forward", {"t": 3, "n": 3, "model": "gamma"}),
    ("GET", "/schedule", {"model": "gamma"}),
    ("GET", "/model", {"model": "gamma"}),
    ("GET", "/models/gamma", {}),
]


async def test_unknown_model_is_a_422_naming_the_field_and_the_valid_names(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        for method, path, params in UNKNOWN_CASES:
            if method == "POST":
                response = await r.http.post(path, json=params)
            else:
                response = await r.http.get(path, params=params)
            assert_names_field(response, "model")
            message = response.json()["error"]
            assert "gamma" in message and "alpha" in message and "beta" in message, (path, message)


async def test_each_model_answers_with_its_own_name_id_schedule_and_points(repo: Path, tiny_checkpoint: Path) -> None:
    spec = SamplerSpec("ddim", steps=10)
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        answers = {}
        for name in ("alpha", "beta"):
            params = {"n": 200, "seed": 11, "sampler": "ddim", "steps": 10, "model": name}
            first = (await r.http.get("/sample", params=params)).json()
            again = (await r.http.post("/sample", json=params)).json()
            assert first["model_name"] == name and first["model"] == read_metadata(repo / name)["weights_sha256"]
            assert first["points"] == again["points"]  # reproducible by seed, GET or POST
            np.testing.assert_allclose(first["points"], expected_points(repo / name, 200, 11, spec), atol=1e-5)
            answers[name] = np.asarray(first["points"])
            model = (await r.http.get("/model", params={"model": name})).json()
            assert model["name"] == name and model["id"] == first["model"]
            schedule = await r.http.get("/schedule", params={"model": name})
            assert schedule.headers["x-swirl-model"] == name and schedule.json()["timesteps"] == model["schedule"]["timesteps"]
            forward = (await r.http.get("/forward", params={"t": 5, "n": 10, "seed": 3, "model": name})).json()
            assert forward["model_name"] == name and forward["model"] == first["model"]
        assert np.abs(answers["alpha"] - answers["beta"]).max() > 1e-3  # different weights, different points


async def test_concurrent_requests_to_two_models_each_match_their_model_alone(repo: Path, tiny_checkpoint: Path) -> None:
    spec = SamplerSpec("dpmpp2m", steps=8)
    expected = {(name, seed): expected_points(repo / name, 300, seed, spec) for name in ("alpha", "beta") for seed in (1, 2, 3)}
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:

        async def one(name: str, seed: int) -> tuple[str, int, np.ndarray]:
            params = {"n": 300, "seed": seed, "sampler": "dpmpp2m", "steps": 8, "model": name}
            response = await r.http.get("/sample", params=params)
            assert response.status_code == 200, response.text
            return name, seed, np.asarray(response.json()["points"])

        results = await asyncio.gather(*(one(name, seed) for (name, seed) in expected for _ in range(2)))
        for name, seed, points in results:
            np.testing.assert_allclose(points, expected[(name, seed)], atol=1e-5)


# -- unavailable models ---------------------------------------------------------------------


async def test_a_corrupt_model_at_start_up_is_left_out_and_shown_unavailable(repo: Path, tiny_checkpoint: Path) -> None:
    copy_model(tiny_checkpoint, repo / "broken")
    corrupt(repo / "broken")
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        broken = (await r.http.get("/models/broken")).json()
        assert broken["state"] == "unavailable" and broken["id"] is None and "sha256 mismatch" in broken["error"]
        assert (await r.http.get("/models/alpha")).json()["state"] == "available"
        response = await r.http.get("/sample", params={"n": 3, "model": "broken"})
        assert response.status_code == 503 and "broken" in response.json()["error"] and "sha256" in response.json()["error"]
        assert (await r.http.get("/sample", params={"n": 3, "model": "beta"})).status_code == 200
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_model_available", model="broken") == 0
        assert metric(samples, "swirl_model_available", model="alpha") == 1


async def test_a_corrupt_default_model_fails_start_up(repo: Path, tiny_checkpoint: Path) -> None:
    corrupt(repo / "alpha")
    with pytest.raises(CheckpointError, match=r"alpha.*sha256 mismatch"):
        async with serving(tiny_checkpoint, models=str(repo), default_model="alpha"):
            pass


# -- reload ---------------------------------------------------------------------------------


async def admin_reload(r: Running) -> dict[str, Any]:
    response = await r.http.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_reload_under_steady_load_drops_nothing_and_every_answer_matches_its_version(repo: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    spec = SamplerSpec("ddim", steps=10)
    n, seeds = 128, (1, 2, 3, 4)
    old_id = read_metadata(repo / "alpha")["weights_sha256"]
    staged = tmp_path / "next"
    new_id = make_variant(tiny_checkpoint, staged / "alpha", seed=2)  # the next version, not yet published
    expected = {old_id: {s: expected_points(repo / "alpha", n, s, spec) for s in seeds}}
    expected[new_id] = {s: expected_points(staged / "alpha", n, s, spec) for s in seeds}
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha", admin_token=TOKEN) as r:
        answers: list[tuple[int, httpx.Response]] = []
        stop = asyncio.Event()

        async def client(k: int) -> None:
            i = 0
            while not stop.is_set():
                seed = seeds[(k + i) % len(seeds)]
                params = {"n": n, "seed": seed, "sampler": "ddim", "steps": 10, "model": "alpha"}
                answers.append((seed, await r.http.get("/sample", params=params)))
                i += 1
                await asyncio.sleep(0.01)  # a response-cache hit never suspends in-process: let the reload have its turn

        clients = [asyncio.create_task(client(k)) for k in range(8)]
        await asyncio.sleep(0.5)
        shutil.rmtree(repo / "alpha")
        shutil.copytree(staged / "alpha", repo / "alpha")  # the retrained model, published
        report = await admin_reload(r)
        assert report["models"]["alpha"] == {"result": "loaded", "id": new_id, "previous": old_id}
        assert report["models"]["beta"]["result"] == "unchanged" and report["ok"] and report["failed"] == []
        after_switch = len(answers)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*clients)

        assert len(answers) > after_switch > 8
        seen = set()
        for seed, response in answers:
            assert response.status_code == 200, response.text
            body = response.json()
            seen.add(body["model"])
            np.testing.assert_allclose(body["points"], expected[body["model"]][seed], atol=1e-5)
        assert seen == {old_id, new_id}
        assert all(response.json()["model"] == new_id for _, response in answers[after_switch + 8 :])  # 8 may have been admitted before
        # the old version left the engine once its last request finished
        listing = (await r.http.get("/models/alpha")).json()
        assert listing["id"] == new_id and listing["versions_loaded"] == 1 and listing["last_reload"]["result"] == "loaded"
        assert len(r.service.worker.loaded_versions) == 2
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_model_reloads_total", model="alpha", result="loaded") == 1
        assert metric(samples, "swirl_model_versions_loaded", model="alpha") == 1
        # the response cache served many of the repeats, yet never an old version's answer (checked above), and the old
        # version's answers left with it
        assert metric(samples, "swirl_response_cache_hits_total") > len(answers) // 2
        assert r.service.response_cache.versions <= {r.service.models.get("alpha").served.key}


async def test_a_corrupt_new_version_leaves_the_old_one_serving(repo: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    old_id = read_metadata(repo / "alpha")["weights_sha256"]
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha", admin_token=TOKEN) as r:
        before = (await r.http.get("/sample", params={"n": 50, "seed": 5, "model": "alpha"})).json()
        make_variant(tiny_checkpoint, repo / "alpha", seed=3)
        corrupt(repo / "alpha")
        report = await admin_reload(r)
        assert report["failed"] == ["alpha"] and not report["ok"]
        assert report["models"]["alpha"]["result"] == "failed" and report["models"]["alpha"]["serving"] == old_id
        assert "sha256 mismatch" in report["models"]["alpha"]["error"]
        listing = (await r.http.get("/models/alpha")).json()
        assert listing["state"] == "available" and listing["id"] == old_id and listing["versions_loaded"] == 1
        assert listing["last_reload"]["result"] == "failed" and "sha256 mismatch" in listing["last_reload"]["error"]
        after = (await r.http.get("/sample", params={"n": 50, "seed": 5, "model": "alpha"})).json()
        assert after["model"] == old_id and after["points"] == before["points"]
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_model_reloads_total", model="alpha", result="failed") == 1
        assert metric(samples, "swirl_model_available", model="alpha") == 1


async def test_reload_adds_new_folders_and_removes_deleted_ones(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha", admin_token=TOKEN) as r:
        gamma_id = make_variant(tiny_checkpoint, repo / "gamma", seed=4)
        shutil.rmtree(repo / "beta")
        report = await admin_reload(r)
        assert report["models"]["gamma"]["result"] == "loaded" and report["models"]["beta"]["result"] == "removed"
        assert (await r.http.get("/sample", params={"n": 3, "model": "gamma"})).json()["model"] == gamma_id
        assert_names_field(await r.http.get("/sample", params={"n": 3, "model": "beta"}), "model")
        assert [m["name"] for m in (await r.http.get("/models")).json()["models"]] == ["alpha", "gamma"]
        # the default model's folder going away never takes it out of service
        shutil.rmtree(repo / "alpha")
        report = await admin_reload(r)
        assert report["models"]["alpha"]["result"] == "failed"
        assert (await r.http.get("/sample", params={"n": 3})).status_code == 200


async def test_sighup_reloads_the_process(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        new_id = make_variant(tiny_checkpoint, repo / "beta", seed=9)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if (await r.http.get("/models/beta")).json()["id"] == new_id:
                break
        await r.app.state.reloader.wait()
        assert (await r.http.get("/sample", params={"n": 3, "model": "beta"})).json()["model"] == new_id


# -- the admin route ------------------------------------------------------------------------


async def test_admin_reload_is_off_without_a_token(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        response = await r.http.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404 and "SWIRL_ADMIN_TOKEN" in response.json()["error"]


async def test_admin_reload_needs_the_right_bearer_token(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha", admin_token=TOKEN) as r:
        missing = await r.http.post("/admin/reload")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert (await r.http.post("/admin/reload", headers={"Authorization": f"Basic {TOKEN}"})).status_code == 401
        assert (await r.http.post("/admin/reload", headers={"Authorization": "Bearer "})).status_code == 401
        for wrong in ("wrong", TOKEN[:-1], TOKEN + "x", "ünïcode"):
            response = await r.http.post("/admin/reload", headers={"Authorization": f"Bearer {wrong}".encode()})
            assert response.status_code == 403, wrong
        right = await r.http.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and right.json()["ok"] and right.json()["other_processes_signalled"] is False


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_are_labelled_by_model(repo: Path, tiny_checkpoint: Path) -> None:
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha") as r:
        for name, count in (("alpha", 2), ("beta", 3)):
            for _ in range(count):
                assert (await r.http.get("/sample", params={"n": 10, "seed": 1, "model": name})).status_code == 200
        assert (await r.http.get("/sample", params={"n": 10, "model": "beta", "sampler": "ddim", "steps": 999})).status_code == 422
        assert (await r.http.get("/sample", params={"n": 10, "model": "nope"})).status_code == 422
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_model_requests_total", model="alpha", endpoint="/sample", status="200") == 2
        assert metric(samples, "swirl_model_requests_total", model="beta", endpoint="/sample", status="200") == 3
        assert metric(samples, "swirl_model_errors_total", model="beta", endpoint="/sample", status="422") == 1
        assert metric(samples, "swirl_model_points_generated_total", model="beta", endpoint="sample") == 30
        assert metric(samples, "swirl_model_request_seconds_count", model="alpha", endpoint="/sample") == 2
        assert metric(samples, "swirl_model_versions_loaded", model="alpha") == 1
        assert not any(dict(labels).get("model") == "nope" for _, labels in samples)  # no label from raw input


async def test_a_backlog_on_one_model_does_not_get_a_small_request_to_another_refused(repo: Path, tiny_checkpoint: Path) -> None:
    """Admission estimates the wait as the engine schedules (each model in flight gets an equal
    share of a tick): behind 10 s of work on alpha, a small request to alpha is refused at once,
    one to beta is admitted and answered."""
    async with serving(tiny_checkpoint, models=str(repo), default_model="alpha", request_timeout_s=5.0, max_points=50_000) as r:
        with worker_held(r.service) as gate:
            big = asyncio.create_task(r.http.get("/sample", params={"n": 20_000, "seed": 1, "model": "alpha"}))  # 1M points × evaluations
            deadline = time.monotonic() + 10
            while r.service.worker.queue_depth < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            r.service.worker.engine.throughput = 1e5  # 10 s of backlog on alpha
            refused = await r.http.get("/sample", params={"n": 10, "seed": 2, "model": "alpha"})
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 10
            other = asyncio.create_task(r.http.get("/sample", params={"n": 10, "seed": 2, "model": "beta"}))
            while r.service.worker.queue_depth < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert r.service.worker.queue_depth == 2  # admitted, waiting at the gate
            gate.set()
            assert (await other).status_code == 200 and (await big).status_code == 200
