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
BINDING = f"{RELEASE}-references"
"""The policy's and the binding's name (the chart's ``<fullname>-references``)."""
FIELD_MANAGER = "stockade-tests"


def render() -> str:
    """The policy and its binding as YAML, from the chart."""
    return Helm().run("template", RELEASE, str(CHART), "--show-only", TEMPLATE).stdout


def install_admission_policy(cluster: Cluster) -> str:
    """Apply the policy and binding (idempotent); return the binding's name."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
        "-f", "-", stdin=render(),
    )  # fmt: skip
    return BINDING


def delete_binding(cluster: Cluster) -> None:
    """Delete the binding only (the policy stays, unenforced)."""
    cluster.kubectl(
        "delete", "validatingadmissionpolicybinding", BINDING, "--ignore-not-found", "--wait"
    )
