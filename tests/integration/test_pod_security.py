"""The agent pod is ``restricted`` in every case (docs/concepts/lifecycle.md, "The pod"),
asked of the API server.

Hypothesis generates Agent specs within what the CRD schema and the operator's default
policy accept (probes, podMetadata, env and envFrom, workspace, resources, network,
serviceAccountName, ...); each is built with :func:`stockade.build.pod.build_pod` and
created with a server-side dry run in a namespace that enforces the Pod Security
Standard ``restricted`` (``pod-security.kubernetes.io/enforce``): the Pod Security
admission plugin, not a copy of its rules, decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from stockade.api.agent import AgentSpec
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef
from stockade.build.pod import build_pod
from stockade.build.resources import effective_resources
from stockade.config import OperatorConfig
from stockade.core.policy import spec_problems
from tests.integration.cluster import Cluster, wait_for

CONFIG = OperatorConfig()
NAMES = st.from_regex(r"\A[a-z]([a-z0-9-]{0,10}[a-z0-9])?\Z")
TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
PORTS = st.one_of(st.integers(min_value=1, max_value=65535), st.sampled_from(["http", "grpc"]))
HANDLERS = st.one_of(
    st.fixed_dictionaries({"exec": st.fixed_dictionaries({"command": st.lists(TEXT, max_size=3)})}),
    st.fixed_dictionaries(
        {
            "httpGet": st.fixed_dictionaries(
                {"port": PORTS},
                optional={
                    "path": st.sampled_from(["/", "/healthz"]),
                    "scheme": st.sampled_from(["HTTP", "HTTPS"]),
                    "httpHeaders": st.lists(
                        st.fixed_dictionaries({"name": st.sampled_from(["X-A", "Accept"]),
                                               "value": TEXT}),
                        max_size=2,
                    ),
                },
            )
        }
    ),
    st.fixed_dictionaries({"tcpSocket": st.fixed_dictionaries({"port": PORTS})}),
    st.fixed_dictionaries({"grpc": st.fixed_dictionaries({"port": st.integers(1, 65535)})}),
)  # fmt: skip
TIMINGS = {
    "initialDelaySeconds": st.integers(0, 100),
    "periodSeconds": st.integers(1, 100),
    "timeoutSeconds": st.integers(1, 100),
    "failureThreshold": st.integers(1, 10),
}
PROBES = st.builds(lambda h, t: {**h, **t}, HANDLERS, st.fixed_dictionaries({}, optional=TIMINGS))
ENV_NAMES = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,10}\Z")
KEY_REF = st.fixed_dictionaries({"name": NAMES, "key": NAMES})
ENV = st.one_of(
    st.fixed_dictionaries({"name": ENV_NAMES, "value": TEXT}),
    st.fixed_dictionaries({"name": ENV_NAMES, "valueFrom": st.one_of(
        st.fixed_dictionaries({"secretKeyRef": KEY_REF}),
        st.fixed_dictionaries({"configMapKeyRef": KEY_REF}),
        st.just({"fieldRef": {"fieldPath": "metadata.name"}}),
        st.just({"resourceFieldRef": {"resource": "limits.memory"}}),
    )}),
)  # fmt: skip
QUANTITIES: dict[str, st.SearchStrategy[str]] = {"cpu": st.sampled_from(["100m", "1", "2"]),
              "memory": st.sampled_from(["64Mi", "1Gi"]),
              "ephemeral-storage": st.sampled_from(["1Gi", "2Gi"])}  # fmt: skip
SPECS = st.fixed_dictionaries(
    {"image": st.sampled_from(["busybox", "ghcr.io/x/agent:1"])},
    optional={
        "command": st.lists(TEXT, max_size=2),
        "args": st.lists(TEXT, max_size=2),
        "env": st.lists(ENV, max_size=4, unique_by=lambda e: str(e["name"])),
        "envFrom": st.lists(
            st.one_of(
                st.fixed_dictionaries({"secretRef": st.fixed_dictionaries({"name": NAMES})}),
                st.fixed_dictionaries({"configMapRef": st.fixed_dictionaries({"name": NAMES})}),
            ),
            max_size=2,
        ),
        "workingDir": st.sampled_from(["/workspace", "/tmp"]),
        "task": TEXT,
        "config": st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9._-]{0,8}\Z"), TEXT, max_size=2),
        "workspace": st.fixed_dictionaries(
            {"size": st.sampled_from(["1Gi", "10Gi"])},
            optional={"storageClassName": NAMES, "retain": st.booleans()},
        ),
        "resources": st.fixed_dictionaries(
            {}, optional={"limits": st.fixed_dictionaries({}, optional=QUANTITIES)}
        ),
        "network": st.fixed_dictionaries({"egress": st.sampled_from(["None", "DNS", "Internet"])}),
        "livenessProbe": PROBES,
        "readinessProbe": PROBES,
        "serviceAccountName": st.just("robot"),
        "runtimeClassName": st.sampled_from(["gvisor", "kata"]),
        "nodeSelector": st.dictionaries(NAMES, NAMES, max_size=2),
        "podMetadata": st.fixed_dictionaries(
            {},
            optional={
                "labels": st.dictionaries(
                    st.sampled_from(["user.stockade.dev/team", "user.stockade.dev/x"]), NAMES
                ),
                "annotations": st.dictionaries(
                    st.sampled_from(
                        ["user.stockade.dev/note", "team", "kubernetes.io/description"]
                    ),
                    TEXT,
                ),
            },
        ),
    },
)


@pytest.fixture(scope="module")
def restricted_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace enforcing Pod Security ``restricted`` (latest), with SA ``robot``."""
    name = f"t-restricted-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(
        name,
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )
    try:
        cluster.kubectl("-n", name, "create", "serviceaccount", "robot")
        wait_for(
            lambda: bool(cluster.kubectl("-n", name, "get", "sa", "robot", "-o", "name")),
            timeout=30,
            what=f"ServiceAccount {name}/robot",
        )
        yield name
    finally:
        cluster.delete_namespaces([name])


def test_the_namespace_really_enforces_restricted(
    cluster: Cluster, restricted_namespace: str
) -> None:
    """A root pod is refused there: the dry run below does decide something."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
    with pytest.raises(ApiException) as info:
        cluster.core.create_namespaced_pod(restricted_namespace, pod, dry_run="All")  # type: ignore[arg-type]
    assert info.value.status == 403 and "restricted" in str(info.value.body)


def test_a_pod_without_fixed_ids_is_restricted_too(
    cluster: Cluster, restricted_namespace: str
) -> None:
    """``agent_uid: platform`` (OpenShift): the pod leaves the ids out and is admitted."""
    spec = AgentSpec.model_validate({"image": "busybox", "workspace": {"size": "1Gi"}})
    config = OperatorConfig(agent_uid="platform")
    ref = AgentRef("platform-uid", restricted_namespace, str(uuid.uuid4()))
    pod = build_pod(
        ref, spec, attempt=1, runtime_class=config.default_runtime_class,
        resources=effective_resources(spec.resources, config), config=config,
    )  # fmt: skip
    assert "runAsUser" not in pod["spec"]["securityContext"]
    created = cluster.core.create_namespaced_pod(restricted_namespace, pod, dry_run="All")  # type: ignore[arg-type]
    assert created.spec.security_context.run_as_non_root is True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fields=SPECS, attempt=st.integers(min_value=1, max_value=100))
def test_every_accepted_agent_gives_a_restricted_pod(
    cluster: Cluster, restricted_namespace: str, fields: dict[str, Any], attempt: int
) -> None:
    try:
        spec = AgentSpec.model_validate(fields)
        resources = effective_resources(spec.resources, CONFIG)
    except (ValidationError, SpecError):
        assume(False)
        raise  # unreachable: assume(False) stops the example
    assume(spec_problems(spec, CONFIG) is None)
    ref = AgentRef("agent", restricted_namespace, str(uuid.uuid4()))
    pod = build_pod(
        ref,
        spec,
        attempt=attempt,
        runtime_class=spec.runtime_class_name or CONFIG.default_runtime_class,
        resources=resources,
    )
    try:
        cluster.core.create_namespaced_pod(restricted_namespace, pod, dry_run="All")  # type: ignore[arg-type]
    except ApiException as exc:
        pytest.fail(f"the API server refused the pod ({exc.status}): {exc.body}\n{pod}")
