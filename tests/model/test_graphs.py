"""The CUDA graphs: bucket choice everywhere; equality with the eager engine where a GPU exists."""

from __future__ import annotations

import pytest
import torch

from model.denoiser import FunctionDenoiser, NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import Engine, EngineRequest, sample
from model.graphs import BUCKETS, ChainGraphs, TickGraphs, bucket_for, tick_graphs
from model.net import EpsilonMLP, NetConfig
from model.schedule import Schedule, ScheduleConfig

SPECS = [SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10, eta=0.5), SamplerSpec("dpmpp2m", steps=10)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the device machine)")


def test_bucket_is_the_smallest_that_fits() -> None:
    assert bucket_for(1) == 256
    assert bucket_for(256) == 256
    assert bucket_for(257) == 1024
    assert bucket_for(BUCKETS[-1]) == BUCKETS[-1]
    assert bucket_for(BUCKETS[-1] + 1) is None


def test_graphs_refuse_a_cpu_device_and_the_hook_stays_eager_there() -> None:
    cpu = FunctionDenoiser(lambda x, t: x, "cpu")
    with pytest.raises(ValueError, match="CUDA"):
        TickGraphs(cpu)
    with pytest.raises(ValueError, match="CUDA"):
        ChainGraphs(cpu)
    assert tick_graphs(cpu) is None


def _gpu_denoiser() -> tuple[NetDenoiser, Schedule]:
    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=64, depth=3), 50).to("cuda").eval()
    return NetDenoiser(net, "cuda"), Schedule.from_config(ScheduleConfig())


@needs_cuda
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.sampler)
def test_graphed_whole_chain_equals_the_eager_engine(spec: SamplerSpec) -> None:
    denoiser, schedule = _gpu_denoiser()
    plan = make_plan(schedule, spec)
    eager = sample(denoiser, plan, 800, seed=5).x0
    graphed = sample(denoiser, plan, 800, seed=5, graphs=True).x0
    torch.testing.assert_close(graphed, eager, atol=1e-5, rtol=0)
    again = sample(denoiser, plan, 800, seed=5, graphs=True).x0  # a replay, not a new capture
    assert torch.equal(again, graphed)


@needs_cuda
def test_graphed_ticks_with_mixed_samplers_equal_each_request_alone() -> None:
    denoiser, schedule = _gpu_denoiser()
    engine = Engine("cuda", tick_graphs=tick_graphs)
    engine.add_model("m", denoiser)
    requests = [EngineRequest(n=100 + 37 * i, seed=i, plan=make_plan(schedule, spec), model="m") for i, spec in enumerate(SPECS * 2)]
    with torch.inference_mode():
        for i, request in enumerate(requests):
            engine.submit(request)
            if i % 2:
                engine.tick()  # later requests join mid-chain
        engine.run()
    for request in requests:
        alone = sample(denoiser, request.plan, request.n, request.seed).x0
        assert request.points is not None
        torch.testing.assert_close(torch.from_numpy(request.points), alone, atol=1e-5, rtol=0)
