"""The shipped Serve configs are valid for the pinned Ray, and build the Swirl application."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

pytest.importorskip("ray.serve", reason="the optional extra swirl[ray] is not installed (pip install -r requirements/ray.txt)")

from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from app.ray_serve import DEFAULT_CONFIG, DEPLOYMENT, SwirlArgs, build_app, read_config
from tests.conftest import ROOT

pytestmark = pytest.mark.ray


def rayservice_config() -> dict[str, Any]:
    manifest = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService" and manifest["apiVersion"] == "ray.io/v1"
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


@pytest.mark.parametrize("load", [lambda: read_config(DEFAULT_CONFIG), rayservice_config], ids=["serve.yaml", "rayservice.yaml"])
def test_the_configs_are_valid_serve_configs_of_swirl(load: Any) -> None:
    config = ServeDeploySchema.model_validate(load())
    (app,) = config.applications
    assert app.import_path == "app.ray_serve:build_app" and app.route_prefix == "/"
    SwirlArgs.model_validate(app.args)
    (deployment,) = app.deployments
    assert deployment.name == DEPLOYMENT
    assert deployment.num_replicas == "auto"
    scaling = deployment.autoscaling_config
    assert isinstance(scaling, dict) and 1 <= scaling["min_replicas"] < scaling["max_replicas"] and scaling["target_ongoing_requests"] > 0
    assert deployment.max_ongoing_requests >= scaling["target_ongoing_requests"]


def test_the_kuberay_manifest_has_a_gpu_worker_group_and_one_gpu_per_replica() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    (group,) = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert rayservice_config()["applications"][0]["args"]["num_gpus"] == 1


def test_build_app_names_a_bad_setting_and_reserves_the_resources() -> None:
    with pytest.raises(ValidationError, match="max_points"):
        build_app({"settings": {"max_points": 0}})
    application = build_app({"settings": {"device": "cpu"}, "num_cpus": 2, "num_gpus": 0})
    options = application._bound_deployment.ray_actor_options
    assert options["num_cpus"] == 2 and "num_gpus" not in options
    assert build_app({"num_gpus": 1})._bound_deployment.ray_actor_options["num_gpus"] == 1


def test_num_gpus_is_a_number_or_auto() -> None:
    with pytest.raises(ValidationError, match="num_gpus"):
        SwirlArgs.model_validate({"num_gpus": "all"})
    assert SwirlArgs.model_validate({"num_gpus": 0.5}).num_gpus == 0.5
