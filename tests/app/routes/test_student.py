"""Serving a distilled student: the ``student`` sampler, its step grids, and 422s naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import torch
from asgi_lifespan import LifespanManager

from app.main import create_app
from model.checkpoint import save_checkpoint
from model.distill import DistillConfig, distill
from model.net import NetConfig
from model.schedule import ScheduleConfig
from model.train import TrainConfig, train
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(
        steps=100,
        batch_size=128,
        warmup_steps=10,
        n_train=2000,
        net=NetConfig(hidden=16, depth=2, time_embedding_dim=8, prediction="v"),
        schedule=ScheduleConfig(zero_terminal_snr=True),
    )
    result = train(config, torch.device("cpu"), progress=False)
    teacher = tmp_path_factory.mktemp("checkpoints") / "tiny-v"
    save_checkpoint(teacher, result.net, config.schedule, result.normalisation, result.summary)
    distill_config = DistillConfig(steps=(1, 2), trajectories=500, train_steps=((1, 30), (2, 30)), batch_size=64, warmup_steps=5)
    paths = distill(teacher, distill_config, teacher.with_name("tiny-v-student"), torch.device("cpu"), progress=False)
    return paths[0]  # the 2-step student


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(student_checkpoint: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(student_checkpoint))
    async with LifespanManager(app, startup_timeout=300) as manager:  # warm-up is slow on a loaded machine
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as client:
            yield client


async def test_model_describes_the_student(http: httpx.AsyncClient) -> None:
    body = (await http.get("/model")).json()
    assert body["student_steps"] == [2] and "student" in body["samplers"]
    assert body["student"]["grids"] == {"2": [50, 12]} and body["student"]["method"] == "trajectory"
    assert body["net"]["prediction"] == "v" and body["schedule"]["zero_terminal_snr"] is True


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_student_sampler_takes_its_grid(http: httpx.AsyncClient, method: str) -> None:
    params = {"n": 300, "seed": 5, "sampler": "student", "steps": 2}
    response = await (http.get("/sample", params=params) if method == "GET" else http.post("/sample", json=params))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["steps"] == 2 and body["sampler"] == "student" and len(body["points"]) == 300
    again = await http.post("/sample", json=params)
    assert again.json()["points"] == body["points"]  # deterministic: no noise after x_T


@pytest.mark.parametrize("steps", [1, 3, 4, 50])
async def test_untrained_step_counts_are_422_naming_steps_and_the_valid_ones(http: httpx.AsyncClient, steps: int) -> None:
    response = await http.post("/sample", json={"n": 10, "sampler": "student", "steps": steps})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"][0]["loc"] == ["body", "steps"]
    assert "trained step counts: 2" in body["error"]


async def test_student_without_steps_is_422(http: httpx.AsyncClient) -> None:
    response = await http.get("/sample", params={"n": 10, "sampler": "student"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "steps"]


async def test_student_sampler_on_an_ordinary_model_is_422_naming_the_sampler(tiny_checkpoint: Path) -> None:
    app = create_app(make_settings(tiny_checkpoint))
    async with LifespanManager(app, startup_timeout=300) as manager:  # warm-up is slow on a loaded machine
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test") as client:
            assert "student" not in (await client.get("/model")).json()["samplers"]
            response = await client.post("/sample", json={"n": 10, "sampler": "student", "steps": 1})
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["body", "sampler"]
            assert "distilled student" in response.json()["error"]
