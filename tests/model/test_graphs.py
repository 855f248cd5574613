"""The CUDA-graph chain: bucket choice everywhere; equality with the eager chain where a GPU exists."""

from __future__ import annotations

import pytest
import torch

from model.diffusion import GeneratorNoise, SamplerSpec, make_plan, net_eps_fn, run_chain
from model.graphs import BUCKETS, GraphedChains, bucket_for
from model.net import EpsilonMLP, NetConfig
from model.schedule import Schedule, ScheduleConfig


def test_bucket_is_the_smallest_that_fits() -> None:
    assert bucket_for(1) == 256
    assert bucket_for(256) == 256
    assert bucket_for(257) == 1024
    assert bucket_for(BUCKETS[-1]) == BUCKETS[-1]
    assert bucket_for(BUCKETS[-1] + 1) is None


def test_graphs_refuse_a_cpu_device() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        GraphedChains(lambda x, t: x, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the device machine)")
@pytest.mark.parametrize("spec", [SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10), SamplerSpec("dpmpp2m", steps=10)])
def test_graphed_chain_equals_eager_chain_per_request(spec: SamplerSpec) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=64, depth=3), 50).to(device).eval()
    schedule = Schedule.from_config(ScheduleConfig())
    eps_fn = net_eps_fn(net, 50, device)
    plan = make_plan(schedule, spec)
    graphs = GraphedChains(eps_fn, device)

    def noise() -> GeneratorNoise:
        return GeneratorNoise([torch.Generator(device=device).manual_seed(s) for s in (1, 2)], [300, 500])

    eager = run_chain(eps_fn, plan, noise(), 800, device=device).x0
    graphed = graphs.run(plan, noise(), 800)
    assert graphed is not None
    torch.testing.assert_close(graphed.x0, eager, atol=1e-5, rtol=0)
    again = graphs.run(plan, noise(), 800)  # replay, not a new capture
    assert again is not None and torch.equal(again.x0, graphed.x0)
