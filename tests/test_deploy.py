"""``deploy/``: the KubeRay manifest is valid Kubernetes (kubernetes-validate, strict, against 1.37) and a
valid Serve config (Ray's own schema) whose application builds; every server flag in the manifest and the
recipes exists; the recipes are valid shell."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from neuron_explainer.activation_server.cli_args import parse_settings
from neuron_explainer.collation.cli import parser as collate_parser
from neuron_explainer.settings import ServerSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = "1.37.0"


def _documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kuberay" / "rayservice.yaml").read_text()) if d]


def test_the_manifest_holds_a_rayservice_and_the_servers_in_front_of_it() -> None:
    kinds = [d["kind"] for d in _documents()]
    assert kinds == ["RayService", "Deployment", "Service"]


def test_kubernetes_objects_validate_strictly() -> None:
    for doc in _documents():
        if doc["kind"] != "RayService":
            kubernetes_validate.validate(doc, K8S, strict=True)


def test_the_rayservice_pod_templates_validate_strictly() -> None:
    """A CRD has no schema in kubernetes-validate; its pod templates are core PodTemplateSpecs and do."""
    [service] = [d for d in _documents() if d["kind"] == "RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # KubeRay wants strings
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": group["template"]}
        kubernetes_validate.validate(template, K8S, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):  # and the check can fail
        bad = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "x"},
            "template": {"spec": {"containers": "no"}},
        }
        kubernetes_validate.validate(bad, K8S, strict=True)


def test_the_serve_config_is_valid_and_its_application_builds() -> None:
    from ray.serve.schema import ServeDeploySchema

    from neuron_explainer.inference.ray_app import DEPLOYMENT, build

    [service] = [d for d in _documents() if d["kind"] == "RayService"]
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    [app] = config.applications
    assert app.import_path == "neuron_explainer.inference.ray_app:build"
    assert [d.name for d in app.deployments] == [DEPLOYMENT]
    built = build(app.args)
    assert type(built).__name__ == "Application"
    server = next(d for d in _documents() if d["kind"] == "Deployment")
    [container] = server["spec"]["template"]["spec"]["containers"]
    settings = parse_settings(container["args"])
    assert settings.ray_app_name == app.name and settings.inference_backend == "ray"
    assert settings.model_name == app.args["model_name"]
    assert settings.ray_address == f"ray://{service['metadata']['name']}-head-svc:10001"


def _flags(script: str) -> list[tuple[str, str]]:
    """``(command, --flag)`` for each flag given to ``neuron-explainer serve|collate`` in a recipe."""
    found = []
    for command in re.findall(r"neuron-explainer (serve|collate) (.*?)(?:\n\s*;;|\n\s*\"?\$@)", script, flags=re.S):
        found += [(command[0], f) for f in re.findall(r"--[a-z_]+", command[1])]
    for shared in re.findall(r"^common=\((.*?)\)$", script, flags=re.M):  # flags every serve line gets
        found += [("serve", f) for f in re.findall(r"--[a-z_]+", shared)]
    return found


@pytest.mark.parametrize("recipe", ["single-machine.sh", "multi-node.sh"])
def test_recipes_are_valid_shell_with_real_flags(recipe: str) -> None:
    script = (DEPLOY / recipe).read_text()
    subprocess.run(["bash", "-n", str(DEPLOY / recipe)], check=True)
    flags = _flags(script)
    assert flags, recipe
    server_flags = {f"--{name}" for name in ServerSettings.__dataclass_fields__}
    collate_flags = {o for a in collate_parser()._actions for o in a.option_strings}
    for command, flag in flags:
        assert flag in (server_flags if command == "serve" else collate_flags), (recipe, command, flag)
