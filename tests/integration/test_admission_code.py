"""Issue 20 on the real API server: whoever shapes what a pod runs may use what it gets.

Class 1: changing the code of someone else's Agent or session (image, command, task,
network, env, config, ...) while it references a Secret is checked against *every*
reference the resulting pods get, not only the new ones. Class 2: a session is not a
channel: joining one needs ``join`` on it, and a member with its own Secret, ConfigMap or
ServiceAccount references takes no code from its session. Users are impersonated, as in
test_admission_policy.py, with fewer rights than the admin.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stockade.api.agent import GROUP, VERSION
from tests.integration.cluster import Cluster, wait_for
from tests.integration.operator import Agents
from tests.integration.test_admission_policy import (
    ESCALATIONS,
    IMAGE,
    SECRET_ENV,
    author,
    create,
    rbac,
)
from tests.integration.test_sessions import Sessions

__all__ = ["author"]  # the fixture, shared with test_admission_policy.py

pytestmark = pytest.mark.integration

OTHER_IMAGE = "registry.example/other:6"
SECRET_GRANT = ESCALATIONS["env-secretKeyRef"][2]
POLICY = r"ValidatingAdmissionPolicy '[a-z0-9-]+-references'"


def patch_session(api: client.CustomObjectsApi, namespace: str, name: str, spec: Any) -> None:
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "agentsessions", name, {"spec": spec}
    )


def forbidden(call: Any, *args: Any) -> str:
    """`call(*args)` must fail with 403 from the policy; return the body."""
    with pytest.raises(ApiException) as info:
        call(*args)
    assert info.value.status == 403, info.value.body
    body = str(info.value.body)
    assert re.search(POLICY, body), body
    return body


# --- class 1: changing the code of a session whose defaults hold a Secret ---------------

CODE_CHANGES: dict[str, dict[str, Any]] = {
    "image": {"image": OTHER_IMAGE},
    "network": {"network": {"egress": "Internet"}},
    "env": {"env": [SECRET_ENV, {"name": "NODE_OPTIONS", "value": "--require /tmp/x.js"}]},
    "config": {"config": {"model": "mine"}},
    "runtimeClassName": {"runtimeClassName": "kata"},
}


@pytest.mark.parametrize("change", list(CODE_CHANGES))
def test_changing_the_code_of_a_session_with_a_secret_needs_that_secret(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi, agents: Agents, change: str
) -> None:
    """The admin's session hands api-key to its members; the author may edit sessions.

    On main only new references were checked: the author's new image (or network, env,
    config, sandbox) ran with the admin's Secret in every member that starts next.
    """
    sessions = Sessions(cluster, namespace)
    sessions.create("team", {"agentDefaults": {"image": IMAGE, "env": [SECRET_ENV]}})
    body = forbidden(
        patch_session, author, namespace, "team", {"agentDefaults": CODE_CHANGES[change]}
    )
    assert re.search(
        r"spec\.agentDefaults\.env\[\]\.valueFrom\.secretKeyRef: user author may not get "
        r'secrets \\?"api-key',
        body,
    ), body
    assert f"spec.agentDefaults.{change}" in body, body
    assert sessions.get("team")["spec"]["agentDefaults"] == {"image": IMAGE, "env": [SECRET_ENV]}
    rbac(cluster, namespace, "grant", "author", [SECRET_GRANT])
    wait_for(
        lambda: _allowed(patch_session, author, namespace, "team", {
            "agentDefaults": CODE_CHANGES[change]}),
        timeout=20,
        what=f"the {change} change allowed after the grant",
    )  # fmt: skip


def test_what_does_not_shape_the_code_is_not_checked(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """Capacity, resources, suspend and an identical re-apply ask for nothing."""
    sessions = Sessions(cluster, namespace)
    spec = {"agentDefaults": {"image": IMAGE, "env": [SECRET_ENV]}, "maxAgents": 2}
    sessions.create("team", spec)
    patch_session(author, namespace, "team", {"maxAgents": 3, "suspend": True})
    patch_session(author, namespace, "team", {
        "agentDefaults": {"resources": {"requests": {"cpu": "100m"}}}})  # fmt: skip
    wait_for(lambda: _reapplied(author, sessions), timeout=20, what="an identical re-apply")
    stored = sessions.get("team")["spec"]
    assert stored["maxAgents"] == 3 and stored["suspend"] is True
    assert stored["agentDefaults"]["image"] == IMAGE


def test_the_code_of_an_agent_with_a_secret_cannot_change(
    namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """An Agent's code fields are immutable (CRD), and the policy would check them too."""
    agents.create("admins", {"image": IMAGE, "env": [SECRET_ENV], "suspend": True})
    for patch in ({"image": OTHER_IMAGE}, {"task": "mine"}, {"command": ["sh"]}):
        with pytest.raises(ApiException) as info:
            author.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "agents", "admins", {"spec": patch}
            )
        assert info.value.status in (403, 422), info.value.body
        assert "immutable" in str(info.value.body) or re.search(POLICY, str(info.value.body))
    assert agents.get("admins")["spec"]["image"] == IMAGE


def _reapplied(api: client.CustomObjectsApi, sessions: Sessions) -> bool:
    """PUT the session as it is (False on a conflict with the operator's status write)."""
    current = sessions.get("team")
    try:
        api.replace_namespaced_custom_object(
            GROUP, VERSION, sessions.namespace, "agentsessions", "team", current
        )
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def _allowed(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


# --- class 2: sessions as a channel ---------------------------------------------------


def test_joining_a_session_needs_join_on_it(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """The admin's session hands api-key to its members: the author's task would get it.

    On main any Agent author could join (a "known limit" of docs/security.md then).
    """
    Sessions(cluster, namespace).create(
        "team", {"agentDefaults": {"image": IMAGE, "env": [SECRET_ENV]}}
    )
    spec = {"sessionRef": {"name": "team"}, "task": "print $KEY"}
    body = forbidden(create, author, namespace, "Agent", "joiner", spec)
    assert re.search(
        r'spec\.sessionRef\.name: user author may not join agentsessions \\?"team\\?"', body
    ), body
    # A session that does not exist yet is no different (GitOps applies members first).
    forbidden(create, author, namespace, "Agent", "early", {"sessionRef": {"name": "later"}})
    join = {"apiGroups": [GROUP], "resources": ["agentsessions"], "resourceNames": ["team"],
            "verbs": ["join"]}  # fmt: skip
    rbac(cluster, namespace, "join-team", "author", [join])
    wait_for(
        lambda: _allowed(create, author, namespace, "Agent", "joiner", spec),
        timeout=20,
        what="joining allowed after the grant",
    )
    forbidden(create, author, namespace, "Agent", "early", {"sessionRef": {"name": "later"}})
    agents.wait_phase("joiner", "Running", "Succeeded")
    # The operator's own writes to the member (ownerReferences, status) pass.
    wait_for(
        lambda: agents.get("joiner")["metadata"].get("ownerReferences"),
        timeout=20,
        what="the member adopted by its session",
    )


def test_a_member_with_its_own_secret_takes_no_code_from_a_later_session(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """GitOps applies the admin's members first; the author then creates their session.

    On main the image-less member ran the author's image with api-key, and the other
    got the author's env, network and config around its Secret.
    """
    agents.create("bare", {"sessionRef": {"name": "team"}, "env": [SECRET_ENV]})
    agents.create("own", {"sessionRef": {"name": "team"}, "image": IMAGE, "env": [SECRET_ENV]})
    defaults = {
        "image": OTHER_IMAGE,
        "env": [{"name": "NODE_OPTIONS", "value": "--require /tmp/x.js"}],
        "network": {"egress": "Internet"},
        "config": {"model": "mine"},
        "resources": {"requests": {"cpu": "150m"}},
    }
    create(author, namespace, "AgentSession", "team", {"agentDefaults": defaults})
    status = agents.wait_phase("bare", "Failed")
    assert status["reason"] == "OwnImageRequired", status
    assert "spec.env[0].valueFrom.secretKeyRef" in status["message"], status
    assert 'session "team"' in status["message"] and "spec.image" in status["message"]
    assert agents.condition("bare", "Stalled")["status"] == "True"
    assert agents.pods("bare") == []
    agents.wait_phase("own", "Running")
    (pod,) = agents.pods("own")
    container = pod.spec.containers[0]
    assert container.image == IMAGE
    assert [e.name for e in container.env or () if e.name == "NODE_OPTIONS"] == []
    # Not code: the session's resources still apply.
    assert container.resources.requests["cpu"] == "150m"
    assert pod.metadata.labels["stockade.dev/egress"] == "none", pod.metadata.labels


def test_a_member_without_references_still_takes_the_session_code(
    cluster: Cluster, namespace: str, agents: Agents
) -> None:
    """The sample's shape: members that set only a task run the session's image."""
    Sessions(cluster, namespace).create(
        "team", {"agentDefaults": {"image": OTHER_IMAGE, "env": [SECRET_ENV]}}
    )
    agents.create("member", {"sessionRef": {"name": "team"}, "task": "review"})
    agents.wait_phase("member", "Running")
    (pod,) = agents.pods("member")
    assert pod.spec.containers[0].image == OTHER_IMAGE
    assert "KEY" in [e.name for e in pod.spec.containers[0].env or ()]


@pytest.mark.parametrize(("secrets", "configmaps"), [(8, 8), (64, 64)])
def test_a_code_change_of_the_largest_defaults_stays_within_the_cel_cost_budget(
    cluster: Cluster, namespace: str, admission_policy: str, secrets: int, configmaps: int
) -> None:
    """An image change re-checks every reference of 128 env variables (the schema's
    maximum) and compares them: as the admin every authorizer call is made (dry run)."""
    env = [
        {"name": f"S{i}", "valueFrom": {"secretKeyRef": {"name": f"s{i}", "key": "k"}}}
        for i in range(secrets)
    ] + [
        {"name": f"C{i}", "valueFrom": {"configMapKeyRef": {"name": f"c{i}", "key": "k"}}}
        for i in range(configmaps)
    ]
    sessions = Sessions(cluster, namespace)
    sessions.create("largest", {"agentDefaults": {"image": IMAGE, "env": env}})
    patched = sessions.api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "agentsessions", "largest",
        {"spec": {"agentDefaults": {"image": OTHER_IMAGE, "env": env[::-1]}}}, dry_run="All",
    )  # fmt: skip
    assert cast(dict[str, Any], patched)["spec"]["agentDefaults"]["image"] == OTHER_IMAGE
