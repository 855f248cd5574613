"""A real two-node Ray cluster on this machine with Swirl deployed from deploy/ray/serve.yaml.

Imported only once ray is known to be installed (see the test modules' importorskip).
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster

from app.ray_serve import DEFAULT_CONFIG, DEPLOYMENT, PROXY_CALLBACK_ENV, deploy, read_config
from tests.conftest import free_port

APP = "swirl"
# Inherited by every process the nodes start. The one proxy sits on the head node and would
# otherwise send each request to the head's replica first (Serve prefers same-node replicas,
# right when every node has a proxy behind a load balancer, not with one proxy for two nodes).
# The proxy's health check gets 30 s instead of 10: a CI machine shared with other jobs can
# stall a process that long, and a proxy restarted mid-test would refuse connections.
CLUSTER_ENV = {
    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    "RAY_USAGE_STATS_ENABLED": "0",
    "OMP_NUM_THREADS": "1",
    **PROXY_CALLBACK_ENV,
}
REPLICA_ACTOR_PREFIX = f"SERVE_REPLICA::{APP}#{DEPLOYMENT}#"


@dataclass
class SwirlCluster:
    cluster: Cluster
    url: str
    head_node_id: str
    worker_node_id: str

    def replicas(self) -> dict[str, dict[str, Any]]:
        """Live replica actors by replica id: {'pid', 'node_id', 'state'} (Ray's actor table)."""
        found = {}
        for info in ray._private.state.actors().values():
            name = info.get("Name", "")
            if name.startswith(REPLICA_ACTOR_PREFIX) and info["State"] == "ALIVE":
                found[name.removeprefix(REPLICA_ACTOR_PREFIX)] = {"pid": info["Pid"], "node_id": info["Address"]["NodeID"], "state": info["State"]}
        return found

    def running_replicas(self) -> int:
        app = serve.status().applications.get(APP)
        if app is None or DEPLOYMENT not in app.deployments:
            return 0
        return int(app.deployments[DEPLOYMENT].replica_states.get("RUNNING", 0))


def test_config(checkpoint: Path, port: int) -> dict[str, Any]:
    """deploy/ray/serve.yaml as shipped, with what a two-node test needs changed."""
    config = copy.deepcopy(read_config(DEFAULT_CONFIG))
    config["proxy_location"] = "HeadOnly"  # both nodes share one loopback: one proxy, one port
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"]["settings"] = {**app["args"]["settings"], "checkpoint": str(checkpoint), "device": "cpu", "max_points": 20_000}
    (deployment,) = app["deployments"]
    deployment.pop("autoscaling_config")
    deployment["num_replicas"] = 2
    deployment["max_replicas_per_node"] = 1  # the two replicas land on different nodes
    deployment["health_check_period_s"] = 2
    return config


def proxy_ready(url: str) -> bool:
    """/readyz = 200 through the proxy (which Serve may still be (re)starting on a busy machine)."""
    try:
        return httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def replica_logs(temp_dir: Path, tail_chars: int = 4000) -> str:
    """The end of every Serve replica's log, to explain a failed start."""
    parts = []
    for path in sorted(temp_dir.glob("ray/session_*/logs/serve/replica_*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail_chars:]}\n")
    return "".join(parts)


@contextmanager
def swirl_cluster(checkpoint: Path, ready_timeout_s: float = 240.0) -> Iterator[SwirlCluster]:
    """Head node + one worker node (1 CPU each, no dashboard), Swirl with a replica on each.

    Everything is torn down on the way out, whatever happened: Serve, the driver's
    connection, both nodes (and with them every worker process they started).
    """
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    previous = {name: os.environ.get(name) for name in [*CLUSTER_ENV, "RAY_TMPDIR"]}
    os.environ.update(CLUSTER_ENV)
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray's session files and its "current cluster" note go here
    node_args = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=False)
    try:
        try:
            head = cluster.add_node(**node_args, include_dashboard=False)
            worker = cluster.add_node(**node_args)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
            port = free_port()
            deploy(test_config(checkpoint, port), timeout_s=ready_timeout_s)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not proxy_ready(url):
                if time.monotonic() > deadline:
                    raise TimeoutError("the Serve proxy does not answer /readyz with 200")
                time.sleep(0.2)
        except BaseException:
            sys.stderr.write(replica_logs(Path(temp_dir)))
            raise
        yield SwirlCluster(cluster, url, head.node_id, worker.node_id)
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            os.environ.pop("RAY_ADDRESS", None)
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
