"""The operator under test really is who STOCKADE_TEST_AUTH says, and is never refused.

Run after tests/integration/test_agents.py and test_sessions.py in each service-account
mode (``make test`` does): those suites then ran with the chart's RBAC, and this checks
that the operator authenticated as the chart's ServiceAccount, that the API server refused
it nothing (its log has no RBAC denial, kopf no missing-permission warning), and what
the ServiceAccount cannot do. In the default admin mode only the log check applies.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.auth import ADMIN, SA_NAMESPACED, OperatorAuth
from tests.integration.cluster import SIM_EXIT_AFTER, SIM_EXIT_CODE, Cluster, wait_for
from tests.integration.operator import Agents, OperatorProcess

pytestmark = pytest.mark.integration

# kube-apiserver's RBAC denial: 'User "<name>" cannot <verb> resource "<r>" ...'.
DENIED = re.compile(r'User \\?"[^"\\]+\\?" cannot [a-z]+ resource')


def service_account_only(auth: OperatorAuth) -> None:
    if auth.mode == ADMIN:
        pytest.skip("STOCKADE_TEST_AUTH is admin: the operator runs with the admin kubeconfig")


def can_i(cluster: Cluster, auth: OperatorAuth, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", "--as", auth.username, *args, check=False)
    return out.strip() == "yes"


def test_a_lifecycle_under_this_identity_is_never_refused(
    agents: Agents, stockade_operator: OperatorProcess
) -> None:
    agents.create(
        "checked",
        {
            "image": "registry.example/agent:1.0",
            "task": "t",
            "workspace": {"size": "1Gi"},
            "podMetadata": {"annotations": {SIM_EXIT_CODE: "0", SIM_EXIT_AFTER: "500ms"}},
        },
    )
    agents.wait_phase("checked", "Succeeded")
    # Events follow the status write: wait for the last one.
    wait_for(
        lambda: (
            {"Created", "PodCreated", "Completed"} <= {e.reason for e in agents.events("checked")}
        ),
        timeout=10,
        what="the Agent's Events",
    )
    log = stockade_operator.log()
    assert not DENIED.findall(log), DENIED.findall(log)[:3]
    assert "Not enough permissions" not in log


def test_operator_authenticates_as_the_charts_service_account(
    cluster: Cluster, operator_auth: OperatorAuth, stockade_operator: OperatorProcess
) -> None:
    service_account_only(operator_auth)
    assert operator_auth.kubeconfig is not None
    assert stockade_operator.env["KUBECONFIG"] == str(operator_auth.kubeconfig)
    whoami = cluster.kubectl(
        "--kubeconfig",
        str(operator_auth.kubeconfig),
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    )
    assert whoami == operator_auth.username


def test_service_account_cannot_read_secrets_or_exec(
    cluster: Cluster, operator_auth: OperatorAuth, namespace: str
) -> None:
    service_account_only(operator_auth)
    assert can_i(cluster, operator_auth, "create", "pods", "-n", namespace)
    for verb in ("get", "list", "watch"):
        assert not can_i(cluster, operator_auth, verb, "secrets", "-n", namespace)
    # (`can-i create pods/exec` would ask about a pod named "exec": use --subresource.)
    assert not can_i(
        cluster, operator_auth, "create", "pods", "--subresource=exec", "-n", namespace
    )
    assert not can_i(cluster, operator_auth, "update", "agents", "-n", namespace)


def test_service_account_reads_only_its_own_admission_policy_binding(
    cluster: Cluster, operator_auth: OperatorAuth, stockade_operator: OperatorProcess
) -> None:
    """Issue 9: `get` on one cluster-scoped name, and the operator sees the policy."""
    service_account_only(operator_auth)
    resource = "validatingadmissionpolicybindings.admissionregistration.k8s.io"
    own = f"{resource}/{operator_auth.release}-references"
    assert can_i(cluster, operator_auth, "get", own)
    assert not can_i(cluster, operator_auth, "get", f"{resource}/someone-elses")
    for verb in ("list", "watch", "update", "delete"):
        assert not can_i(cluster, operator_auth, verb, resource)
    assert "stockade_admission_policy_present 1.0" in stockade_operator.metrics()


def test_namespaced_service_account_sees_only_its_namespaces(
    cluster: Cluster, operator_auth: OperatorAuth, namespace: str
) -> None:
    if operator_auth.mode != SA_NAMESPACED:
        pytest.skip("only the namespaced RBAC mode is confined to namespaces")
    assert can_i(cluster, operator_auth, "list", "agents.stockade.dev", "-n", namespace)
    for other in ("default", "kube-system", operator_auth.namespace):
        assert not can_i(cluster, operator_auth, "list", "agents.stockade.dev", "-n", other)
        assert not can_i(cluster, operator_auth, "list", "pods", "-n", other)
    assert not can_i(cluster, operator_auth, "list", "agents.stockade.dev", "--all-namespaces")
    assert not can_i(cluster, operator_auth, "list", "namespaces")
