"""Fixtures of the integration suite: one operator for the whole package.

The cluster, CRD and namespace fixtures are shared with tests/reliability and live in
tests/conftest.py. Here:

- `admission_policy` (session): the chart's ValidatingAdmissionPolicy and binding.
- `stockade_operator` (package): the real operator as a subprocess, authenticated as
  `operator_auth` says. Package-scoped, so it is stopped when the integration tests are
  done: tests/reliability runs its own operators, and two operators must never
  reconcile the same objects.
- `agents` (per test): Agent helpers for a fresh namespace watched by that operator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import NamespaceFactory
from tests.integration.auth import OperatorAuth, gateway_ca_reader
from tests.integration.cluster import Cluster
from tests.integration.operator import Agents, OperatorProcess, running_operator

__all__ = ["NamespaceFactory"]

DENIED_CLUSTER_RANGE = "198.51.100.0/24"
"""The operator's ``STOCKADE_EGRESS_DENIED_CIDRS`` in the integration suite."""

GATEWAY_NAMESPACE = "t-stockade-operator"
"""The operator's own namespace in the integration suite (the egress gateway's)."""
GATEWAY_ADDRESS = f"stockade-gateway.{GATEWAY_NAMESPACE}.svc:3128"
"""The operator's ``STOCKADE_GATEWAY_ADDRESS`` (no gateway runs: kwok plays the pods)."""
GATEWAY_CA_CONFIGMAP = "stockade-gateway-ca"
"""The operator's ``STOCKADE_GATEWAY_CA_CONFIGMAP``."""


@pytest.fixture(scope="session")
def admission_policy(cluster: Cluster, crds: None) -> str:
    """The chart's ValidatingAdmissionPolicy and binding installed; the binding's name."""
    from tests.integration.admission import install_admission_policy

    return install_admission_policy(cluster)


@pytest.fixture(scope="package")
def stockade_operator(
    cluster: Cluster, crds: None, admission_policy: str, operator_auth: OperatorAuth
) -> Iterator[OperatorProcess]:
    """The real operator, running as a subprocess against the local cluster.

    It authenticates as `operator_auth` says (the admin unless STOCKADE_TEST_AUTH), and
    checks the tests' admission policy binding (the chart's own, as the chart's
    ServiceAccount: RBAC lets it read only that one).
    """
    env = {
        "STOCKADE_ADMISSION_POLICY_BINDING": admission_policy,
        # A stand-in for the cluster's pod and service ranges (TEST-NET-2): Custom egress
        # may not reach it (test_egress_policies.py).
        "STOCKADE_EGRESS_DENIED_CIDRS": DENIED_CLUSTER_RANGE,
        # Egress Hosts (issue 21): where the gateway would be, and its CA.
        "STOCKADE_OPERATOR_NAMESPACE": GATEWAY_NAMESPACE,
        "STOCKADE_GATEWAY_ADDRESS": GATEWAY_ADDRESS,
        "STOCKADE_GATEWAY_CA_CONFIGMAP": GATEWAY_CA_CONFIGMAP,
        **operator_auth.operator_env,
    }
    with (
        gateway_ca_reader(cluster, operator_auth, GATEWAY_NAMESPACE, GATEWAY_CA_CONFIGMAP),
        running_operator(cluster, env, operator_auth.kubeconfig) as process,
    ):
        yield process


@pytest.fixture
def agents(cluster: Cluster, namespace: str, stockade_operator: OperatorProcess) -> Agents:
    """Agent helpers for a fresh namespace watched by the running operator."""
    return Agents(cluster, namespace)
