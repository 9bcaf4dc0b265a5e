"""Issue 9 on the real API server: creating an Agent is never more power than a pod.

Users are impersonated (``Impersonate-User`` on the admin's credentials): the chart's
ValidatingAdmissionPolicy must refuse an Agent author who may not use the
ServiceAccount, Secret or ConfigMap the Agent references, say which field and which
permission, and let the same author through once RBAC grants it. Without the policy's
binding the operator refuses such Agents itself (ReferenceNotAllowed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stockade.api.agent import GROUP, VERSION
from tests.integration.admission import RELEASE, delete_binding, install_admission_policy
from tests.integration.auth import OperatorAuth
from tests.integration.cluster import Cluster, wait_for
from tests.integration.operator import Agents, OperatorProcess

IMAGE = "registry.example/agent:1"
AGENT_VERBS = ["create", "get", "list", "update", "patch", "delete"]

Grant = Callable[..., None]


def as_user(cluster: Cluster, user: str) -> client.CustomObjectsApi:
    """A custom-objects client that acts as `user` (impersonated by the admin)."""
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    api.set_default_header("Impersonate-User", user)
    api.set_default_header("Impersonate-Group", "system:authenticated")
    return client.CustomObjectsApi(api)


def apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    """Create `objects` in `namespace` as the admin (kubectl apply)."""
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(items))


def rbac(cluster: Cluster, namespace: str, name: str, user: str, rules: list[Any]) -> None:
    """A Role with `rules` bound to `user` in `namespace`."""
    group = "rbac.authorization.k8s.io"
    apply(
        cluster,
        namespace,
        {"apiVersion": f"{group}/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": f"{group}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": group, "kind": "Role", "name": name},
            "subjects": [{"apiGroup": group, "kind": "User", "name": user}],
        },
    )


@pytest.fixture
def author(cluster: Cluster, namespace: str) -> client.CustomObjectsApi:
    """User `author`, who may only manage Agents and AgentSessions in `namespace`."""
    rules = [{"apiGroups": [GROUP], "resources": ["agents", "agentsessions"], "verbs": AGENT_VERBS}]
    rbac(cluster, namespace, "agent-author", "author", rules)
    apply(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key"},
         "stringData": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}},
    )  # fmt: skip
    return as_user(cluster, "author")


def create(api: client.CustomObjectsApi, namespace: str, kind: str, name: str, spec: Any) -> Any:
    plural = {"Agent": "agents", "AgentSession": "agentsessions"}[kind]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    return api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def refused(api: client.CustomObjectsApi, namespace: str, kind: str, spec: Any) -> str:
    """Create must fail with 403 from the policy; return the message."""
    with pytest.raises(ApiException) as info:
        create(api, namespace, kind, "refused", spec)
    assert info.value.status == 403, info.value.body
    body = str(info.value.body)
    # The tests' policy, or (as the chart's ServiceAccount) the chart's own: the API
    # server names whichever denied first.
    assert re.search(r"ValidatingAdmissionPolicy '[a-z0-9-]+-references'", body), body
    return body


SECRET_ENV = {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "k"}}}
CONFIG_ENV = {"name": "SET", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}
ESCALATIONS: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "serviceAccountName": (
        {"serviceAccountName": "robot"},
        r"spec\.serviceAccountName: user author may not create serviceaccounts/token for "
        r'ServiceAccount \\?"robot\\?"',
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["robot"],
         "verbs": ["create"]},
    ),
    "env-secretKeyRef": (
        {"env": [SECRET_ENV]},
        r'spec\.env\[\]\.valueFrom\.secretKeyRef: user author may not get secrets \\?"api-key',
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["api-key"],
         "verbs": ["get"]},
    ),
    "envFrom-secretRef": (
        {"envFrom": [{"secretRef": {"name": "api-key"}}]},
        r'spec\.envFrom\[\]\.secretRef: user author may not get secrets \\?"api-key',
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["api-key"],
         "verbs": ["get"]},
    ),
    "credentials-secretKeyRef": (  # issue 21: the gateway adds the Secret to requests
        {"network": {"egress": "Hosts", "hosts": ["api.example.com"]},
         "credentials": [{"name": "api", "secretKeyRef": {"name": "api-key", "key": "k"},
                          "hosts": ["api.example.com"]}]},
        r'spec\.credentials\[\]\.secretKeyRef: user author may not get secrets \\?"api-key',
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["api-key"],
         "verbs": ["get"]},
    ),
    "env-configMapKeyRef": (
        {"env": [CONFIG_ENV]},
        r"spec\.env\[\]\.valueFrom\.configMapKeyRef: user author may not get configmaps",
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"],
         "verbs": ["get"]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("escalation", list(ESCALATIONS))
def test_an_agent_author_cannot_borrow_what_they_cannot_use(
    cluster: Cluster,
    namespace: str,
    author: client.CustomObjectsApi,
    stockade_operator: OperatorProcess,
    escalation: str,
) -> None:
    fields, message, grant = ESCALATIONS[escalation]
    spec = {"image": IMAGE, **fields}
    assert re.search(message, refused(author, namespace, "Agent", spec))
    rbac(cluster, namespace, "grant", "author", [grant])
    # The authorizer cache may lag the new binding for a moment.
    wait_for(
        lambda: _created(author, namespace, "allowed", spec),
        timeout=20,
        what=f"the {escalation} Agent allowed after the grant",
    )


def _created(api: client.CustomObjectsApi, namespace: str, name: str, spec: Any) -> bool:
    try:
        create(api, namespace, "Agent", name, spec)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_an_agent_author_can_still_create_and_run_ordinary_agents(
    namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    env = [{"name": "PLAIN", "value": "x"}, {"name": "ME", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}}]  # fmt: skip
    create(author, namespace, "Agent", "plain", {"image": IMAGE, "env": env})
    agents.wait_phase("plain", "Running", "Succeeded")


def test_unchanged_references_are_not_checked_again(
    namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """An admin's Agent with a Secret: the operator runs it, the author may suspend it."""
    agents.create("admins", {"image": IMAGE, "env": [SECRET_ENV], "serviceAccountName": "robot"})
    agents.wait_phase("admins", "Running")
    author.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "agents", "admins", {"spec": {"suspend": True}}
    )
    agents.wait_phase("admins", "Paused")


def test_a_session_author_cannot_put_secrets_into_agent_defaults(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi
) -> None:
    spec = {"agentDefaults": {"env": [SECRET_ENV]}}
    message = refused(author, namespace, "AgentSession", spec)
    assert re.search(
        r"spec\.agentDefaults\.env\[\]\.valueFrom\.secretKeyRef: user author may not get "
        r'secrets \\?"api-key',
        message,
    ), message
    create(author, namespace, "AgentSession", "plain", {"maxAgents": 2})
    # Adding the reference later is checked too.
    with pytest.raises(ApiException) as info:
        author.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "agentsessions", "plain", {"spec": spec}
        )
    assert info.value.status == 403
    rbac(cluster, namespace, "grant", "author", [ESCALATIONS["env-secretKeyRef"][2]])
    wait_for(
        lambda: _patched(author, namespace, "plain", {"spec": spec}),
        timeout=20,
        what="agentDefaults allowed after the grant",
    )


def _patched(api: client.CustomObjectsApi, namespace: str, name: str, patch: Any) -> bool:
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "agentsessions", name, patch)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


@pytest.fixture
def no_policy(
    cluster: Cluster, operator_auth: OperatorAuth, stockade_operator: OperatorProcess
) -> Iterator[None]:
    """The binding the operator checks deleted until it notices; restored after.

    As the chart's ServiceAccount the operator checks its own release's binding.
    """
    release = operator_auth.release or RELEASE
    delete_binding(cluster, release)
    try:
        wait_for(
            lambda: "stockade_admission_policy_present 0.0" in stockade_operator.metrics(),
            timeout=30,
            what="the operator noticing the binding is gone",
        )
        yield
    finally:
        install_admission_policy(cluster, release)
        wait_for(
            lambda: "stockade_admission_policy_present 1.0" in stockade_operator.metrics(),
            timeout=30,
            what="the operator noticing the binding is back",
        )


def test_without_the_policy_the_operator_refuses_references(
    no_policy: None, agents: Agents
) -> None:
    agents.create("secret", {"image": IMAGE, "env": [SECRET_ENV]})
    agents.create("plain", {"image": IMAGE})
    status = agents.wait_phase("secret", "Failed")
    assert status["reason"] == "ReferenceNotAllowed"
    assert "spec.env[0].valueFrom.secretKeyRef" in status["message"]
    assert "admissionPolicy.enabled=true" in status["message"]
    assert agents.condition("secret", "Stalled")["status"] == "True"
    agents.wait_phase("plain", "Running")


@pytest.mark.parametrize(
    ("secrets", "configmaps"),
    [(8, 8), (64, 64)],  # the most names checked one by one; then namespace-wide checks
)
def test_the_largest_agents_stay_within_the_cel_cost_budget(
    cluster: Cluster, namespace: str, admission_policy: str, secrets: int, configmaps: int
) -> None:
    """The API server stops a policy over its CEL budget: the worst cases must pass.

    A member (one more check: ``join`` on its session); 128 env variables, 16
    envFrom entries and 16 credentials are the schema's maximum; as the admin every
    authorizer call is made and allowed (a server-side dry run).
    """
    env = [
        {"name": f"S{i}", "valueFrom": {"secretKeyRef": {"name": f"s{i}", "key": "k"}}}
        for i in range(secrets)
    ] + [
        {"name": f"C{i}", "valueFrom": {"configMapKeyRef": {"name": f"c{i}", "key": "k"}}}
        for i in range(configmaps)
    ]
    env_from = [{"secretRef": {"name": f"f{i}"}} for i in range(8)] + [
        {"configMapRef": {"name": f"g{i}"}} for i in range(8)
    ]
    if secrets + configmaps <= 16:
        env_from = []  # exactly 8 + 8 names, each checked by name
    spec = {"image": IMAGE, "serviceAccountName": "default", "env": env, "envFrom": env_from,
            "sessionRef": {"name": "team"}}  # fmt: skip
    if secrets + configmaps > 16:  # and 16 credentials, each with its own Secret
        spec["credentials"] = [
            {"name": f"k{i}", "secretKeyRef": {"name": f"k{i}", "key": "k"}, "hosts": ["a.com"]}
            for i in range(16)
        ]
        spec["network"] = {"egress": "Hosts", "hosts": ["a.com"]}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": "largest"}}
    body["spec"] = spec
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "agents", body, dry_run="All"
    )


# --- issue 20 class 4: the guard's own integrity -------------------------------------

TAMPERINGS: dict[str, tuple[str, str, Any, str]] = {
    # name -> (resource, reason label, JSON patch (a list) or merge patch (a dict), what
    # the operator notices)
    "policy-expression-edited": (
        "validatingadmissionpolicy",
        "policy-changed",
        [{"op": "replace", "path": "/spec/validations/0/expression", "value": "true"}],
        "the policy's first validation replaced by true",
    ),
    "binding-warn-only": (
        "validatingadmissionpolicybinding",
        "not-denying",
        [{"op": "replace", "path": "/spec/validationActions", "value": ["Warn"]}],
        "the binding only warns",
    ),
    "binding-namespace-selector": (
        "validatingadmissionpolicybinding",
        "match-restricted",
        {"spec": {"matchResources": {"namespaceSelector": {"matchLabels": {"nobody": "here"}}}}},
        "the binding exempts every namespace without the label",
    ),
}


@pytest.fixture(params=list(TAMPERINGS))
def tampered(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    operator_auth: OperatorAuth,
    stockade_operator: OperatorProcess,
) -> Iterator[str]:
    """The policy or its binding tampered with until the operator notices; restored after.

    Yields the tampering's name. Restoring deletes the binding and applies the chart's
    policy and binding again (a server-side apply alone would keep fields another
    manager added, such as the namespaceSelector).
    """
    resource, reason, patch, what = TAMPERINGS[request.param]
    release = operator_auth.release or RELEASE
    name = f"{release}-references"
    kind = "json" if isinstance(patch, list) else "merge"
    cluster.kubectl("patch", resource, name, f"--type={kind}", "-p", json.dumps(patch))
    problem = f'stockade_admission_policy_problem{{reason="{reason}"}} 1.0'
    try:
        wait_for(
            lambda: (
                problem in stockade_operator.metrics()
                and "stockade_admission_policy_present 0.0" in stockade_operator.metrics()
            ),
            timeout=30,
            what=f"the operator noticing {what}",
        )
        yield request.param
    finally:
        delete_binding(cluster, release)
        install_admission_policy(cluster, release)
        wait_for(
            lambda: "stockade_admission_policy_present 1.0" in stockade_operator.metrics(),
            timeout=30,
            what="the operator trusting the restored policy",
        )


def test_a_tampered_policy_counts_as_absent(tampered: str, agents: Agents) -> None:
    agents.create("secret", {"image": IMAGE, "env": [SECRET_ENV]})
    agents.create("plain", {"image": IMAGE})
    status = agents.wait_phase("secret", "Failed")
    assert status["reason"] == "ReferenceNotAllowed", (tampered, status)
    assert "spec.env[0].valueFrom.secretKeyRef" in status["message"]
    agents.wait_phase("plain", "Running")
