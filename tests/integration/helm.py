"""Drive the Helm chart (helm/stockade) from tests: render, lint, install, uninstall.

`Helm` runs the pinned helm binary (resolved like hack/lib.sh does) against a test
cluster's kubeconfig; `render` returns the rendered objects as dicts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.cluster import REPO_ROOT, resolve_binary

CHART = REPO_ROOT / "helm" / "stockade"


TEST_IMAGE = "registry.example.com/stockade"
"""The image repository the tests render and install with: the chart has no default
(no image is published) and fails without one (test_helm checks the message)."""

NO_CRDS = {"crds.enabled": False}
"""Values for a release in the shared test cluster: its CRDs come from the ``crds``
fixture (crds/), not owned by any release, which Helm would refuse to adopt."""


def set_args(values: Mapping[str, Any] | None) -> list[str]:
    """``--set-json key=<json>`` arguments for `values` (dotted keys; any JSON value)."""
    import json

    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


@dataclass
class Helm:
    """The helm CLI, optionally bound to a cluster's kubeconfig."""

    kubeconfig: Path | None = None
    binary: str = ""

    def __post_init__(self) -> None:
        if not self.binary:
            self.binary = resolve_binary("helm")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm; with `check`, raise AssertionError (with stderr) when it fails.

        ``template``, ``install``, ``upgrade`` and ``lint`` get ``image.repository`` =
        :data:`TEST_IMAGE` unless the arguments set it or pass a values file.
        """
        command = [self.binary, *args]
        if (
            args
            and args[0] in ("template", "install", "upgrade", "lint")
            and not any("image.repository" in a or a in ("-f", "--values") for a in args)
        ):
            command += ["--set", f"image.repository={TEST_IMAGE}"]
        if self.kubeconfig is not None:
            command += ["--kubeconfig", str(self.kubeconfig)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "stockade",
        namespace: str = "stockade-system",
        extra: Iterable[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``helm template`` of the chart (no cluster needed)."""
        return self.run(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *set_args(values),
            *extra,
            check=check,
        )

    def render(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "stockade",
        namespace: str = "stockade-system",
        extra: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """The chart's objects for `values`, as dicts (empty documents dropped)."""
        out = self.template(values, release=release, namespace=namespace, extra=extra).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def install(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any] | None = None,
        *extra: str,
    ) -> subprocess.CompletedProcess[str]:
        """``helm upgrade --install`` into `namespace` (created if missing)."""
        return self.run(
            "upgrade",
            "--install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--create-namespace",
            *set_args(values),
            *extra,
        )

    def uninstall(self, release: str, namespace: str) -> None:
        """``helm uninstall``; a release that is already gone is fine."""
        self.run("uninstall", release, "--namespace", namespace, "--ignore-not-found")


def by_kind(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    """The objects of one kind, in rendering order."""
    return [obj for obj in objects if obj.get("kind") == kind]
