"""Install the chart's ValidatingAdmissionPolicy (issue 9) into a test cluster.

The policy has one source, helm/stockade/templates/admission-policy.yaml: it is rendered
here with ``helm template --show-only`` (release :data:`RELEASE`) and server-side
applied, so the tests exercise exactly what the chart and manifests/install.yaml ship.
"""

from __future__ import annotations

from tests.integration.cluster import Cluster
from tests.integration.helm import CHART, Helm

RELEASE = "stockade-tests"
TEMPLATE = "templates/admission-policy.yaml"
FIELD_MANAGER = "stockade-tests"


def binding_name(release: str = RELEASE) -> str:
    """The binding (and policy) name of a release whose name contains "stockade"."""
    return f"{release}-references"


def render(release: str = RELEASE) -> str:
    """The policy and its binding as YAML, from the chart, as release `release`."""
    return Helm().run("template", release, str(CHART), "--show-only", TEMPLATE).stdout


def install_admission_policy(cluster: Cluster, release: str = RELEASE) -> str:
    """Apply the policy and binding (idempotent); return the binding's name."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
        "-f", "-", stdin=render(release),
    )  # fmt: skip
    return binding_name(release)


def delete_binding(cluster: Cluster, release: str = RELEASE) -> None:
    """Delete the binding only (the policy stays, unenforced)."""
    cluster.kubectl(
        "delete", "validatingadmissionpolicybinding", binding_name(release),
        "--ignore-not-found", "--wait",
    )  # fmt: skip
