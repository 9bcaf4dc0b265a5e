"""The agent pod: hardened (PSS restricted), sandboxed, owned, deterministic."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.api.agent import AgentSpec
from stockade.build.configmap import build_input_configmap
from stockade.build.errors import SpecError
from stockade.build.names import labels_for
from stockade.build.pod import build_pod
from stockade.build.resources import effective_resources
from stockade.build.workspace import build_workspace_pvc
from stockade.config import OperatorConfig
from tests.unit.conftest import REF, spec

RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
    "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
}


def pod(agent: AgentSpec | None = None, attempt: int = 1, **kwargs: Any) -> dict[str, Any]:
    return build_pod(
        REF,
        agent if agent is not None else spec(),
        attempt=attempt,
        runtime_class=kwargs.pop("runtime_class", "gvisor"),
        resources=kwargs.pop("resources", RESOURCES),
        **kwargs,
    )


def container(p: dict[str, Any]) -> dict[str, Any]:
    (c,) = p["spec"]["containers"]
    return c


def env_of(p: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(p)["env"]}


def volume(p: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in p["spec"]["volumes"] if v["name"] == name), None)


def mount(p: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in container(p)["volumeMounts"] if m["name"] == name), None)


# --- Pod Security Standards ----------------------------------------------------------
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ : every control of
# the Baseline profile and the additional controls of the Restricted profile, checked on
# the fields the standard names (containers, initContainers, ephemeralContainers).

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}


def restricted_violations(p: dict[str, Any]) -> list[str]:
    """The Pod Security Standard `restricted` controls pod `p` violates (empty: compliant)."""
    problems: list[str] = []
    spec = p["spec"]
    psc = spec.get("securityContext") or {}
    containers = [
        *spec.get("containers", []),
        *spec.get("initContainers", []),
        *spec.get("ephemeralContainers", []),
    ]
    contexts = [("pod", psc)] + [(c["name"], c.get("securityContext") or {}) for c in containers]

    # Baseline: HostProcess.
    for who, sc in contexts:
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{who}: hostProcess")
    # Baseline: host namespaces.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(field)
    # Baseline: privileged containers.
    for who, sc in contexts[1:]:
        if sc.get("privileged"):
            problems.append(f"{who}: privileged")
    # Baseline: hostPath volumes. Restricted: volume types.
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if "hostPath" in kinds:
            problems.append(f"volume {vol['name']}: hostPath")
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {vol['name']}: type {kinds - RESTRICTED_VOLUME_TYPES}")
    # Baseline: host ports.
    for c in containers:
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{c['name']}: hostPort")
    # Baseline: AppArmor.
    for who, sc in contexts:
        if (sc.get("appArmorProfile") or {}).get("type") not in (
            None,
            "RuntimeDefault",
            "Localhost",
        ):
            problems.append(f"{who}: appArmorProfile")
    for key, value in (p["metadata"].get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(f"annotation {key}")
    # Baseline: SELinux.
    for who, sc in contexts:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            problems.append(f"{who}: seLinuxOptions")
    # Baseline: /proc mount type.
    for who, sc in contexts[1:]:
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{who}: procMount")
    # Baseline: sysctls.
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl['name']}")
    # Restricted: privilege escalation (must be explicitly false).
    for who, sc in contexts[1:]:
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{who}: allowPrivilegeEscalation")
    # Restricted: running as non-root (pod level true, no container false; or all true).
    pod_nonroot = psc.get("runAsNonRoot")
    for who, sc in contexts[1:]:
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and pod_nonroot is not True):
            problems.append(f"{who}: runAsNonRoot")
    if pod_nonroot is False:
        problems.append("pod: runAsNonRoot")
    # Restricted: running as non-root user (runAsUser must not be 0).
    for who, sc in contexts:
        if sc.get("runAsUser") == 0:
            problems.append(f"{who}: runAsUser 0")
    # Baseline + Restricted: seccomp RuntimeDefault or Localhost, set at pod or container.
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append("pod: seccompProfile")
    for who, sc in contexts[1:]:
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{who}: seccompProfile")
    # Baseline + Restricted: capabilities (drop ALL; add at most NET_BIND_SERVICE).
    for who, sc in contexts[1:]:
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{who}: capabilities.drop lacks ALL")
        added = set(caps.get("add") or [])
        if not added <= {"NET_BIND_SERVICE"} or not added <= BASELINE_CAPABILITIES:
            problems.append(f"{who}: capabilities.add {added}")
    return problems


def test_checker_catches_violations() -> None:
    bad = pod()
    c = container(bad)
    bad["spec"]["hostNetwork"] = True
    c["securityContext"]["allowPrivilegeEscalation"] = True
    c["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    c["securityContext"]["runAsNonRoot"] = False
    bad["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    bad["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    assert len(restricted_violations(bad)) >= 6


def test_minimal_pod_is_restricted() -> None:
    assert restricted_violations(pod()) == []


def test_security_contexts() -> None:
    p = pod()
    assert p["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(p)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_the_platform_may_assign_the_uid() -> None:
    """OpenShift's restricted-v2 assigns the uid: no ids, still non-root and restricted."""
    from stockade.config import OperatorConfig

    p = pod(config=OperatorConfig(agent_uid="platform"))
    assert p["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert restricted_violations(p) == []
    other = pod(config=OperatorConfig(agent_uid=1000))["spec"]["securityContext"]
    assert (other["runAsUser"], other["runAsGroup"], other["fsGroup"]) == (1000, 1000, 1000)


def test_minimal_pod() -> None:
    p = pod(attempt=3)
    assert p["apiVersion"] == "v1"
    assert p["kind"] == "Pod"
    assert p["metadata"] == {
        "name": "demo-3",
        "namespace": "team-a",
        "labels": {
            **labels_for("demo"),
            "stockade.dev/attempt": "3",
            "stockade.dev/egress": "none",
        },
        "ownerReferences": [
            {
                "apiVersion": "stockade.dev/v1alpha1",
                "kind": "Agent",
                "name": "demo",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    s = p["spec"]
    assert s["restartPolicy"] == "Never"
    assert s["runtimeClassName"] == "gvisor"
    assert s["automountServiceAccountToken"] is False
    assert s["enableServiceLinks"] is False
    for absent in ("serviceAccountName", "priorityClassName", "nodeSelector", "tolerations"):
        assert absent not in s
    c = container(p)
    assert c["name"] == "agent"
    assert c["image"] == "ghcr.io/x/agent:1"
    for absent in ("command", "args", "workingDir", "envFrom", "livenessProbe", "readinessProbe"):
        assert absent not in c
    assert c["env"] == [
        {"name": "STOCKADE_AGENT_NAME", "value": "demo"},
        {"name": "STOCKADE_ATTEMPT", "value": "3"},
        {"name": "HOME", "value": "/home/agent"},
        {"name": "XDG_CACHE_HOME", "value": "/home/agent/.cache"},
    ]
    assert c["resources"] == RESOURCES
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert s["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    assert c["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": "/home/agent"},
    ]


# --- the agent contract: a writable HOME and cache on a read-only root ---------------


def writable_mount_paths(p: dict[str, Any]) -> set[str]:
    return {m["mountPath"] for m in container(p)["volumeMounts"] if not m.get("readOnly")}


def test_home_is_an_emptydir_without_a_workspace() -> None:
    p = pod()
    env = env_of(p)
    assert env["HOME"] == "/home/agent"
    assert env["XDG_CACHE_HOME"] == "/home/agent/.cache"
    assert "/home/agent" in writable_mount_paths(p)
    assert volume(p, "home") == {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}}


def test_home_is_the_workspace_when_there_is_one() -> None:
    p = pod(spec(workspace={"size": "5Gi"}))
    env = env_of(p)
    assert env["HOME"] == "/workspace"
    assert env["XDG_CACHE_HOME"] == "/workspace/.cache"
    assert "/workspace" in writable_mount_paths(p)
    assert volume(p, "home") is None
    assert mount(p, "home") is None


def test_size_limits_come_from_the_operator_config() -> None:
    config = OperatorConfig(tmp_size_limit="256Mi", home_size_limit="3Gi")
    p = pod(config=config)
    assert volume(p, "tmp") == {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}
    assert volume(p, "home") == {"name": "home", "emptyDir": {"sizeLimit": "3Gi"}}


def test_the_agents_env_may_set_home_and_cache() -> None:
    agent = spec(
        env=[{"name": "HOME", "value": "/tmp/h"}, {"name": "XDG_CACHE_HOME", "value": "/tmp/c"}]
    )
    env = container(pod(agent))["env"]
    names = [e["name"] for e in env]
    assert names.count("HOME") == names.count("XDG_CACHE_HOME") == 1
    assert env_of(pod(agent))["HOME"] == "/tmp/h"
    assert env_of(pod(agent))["XDG_CACHE_HOME"] == "/tmp/c"
    # Only HOME set: the cache stays in Stockade's (still mounted, writable) home.
    only_home = env_of(pod(spec(env=[{"name": "HOME", "value": "/tmp/h"}])))
    assert only_home["XDG_CACHE_HOME"] == "/home/agent/.cache"


def test_runtime_class_and_resources_are_used_as_given() -> None:
    resources = effective_resources(None, OperatorConfig())
    p = pod(runtime_class="kata", resources=resources)
    assert p["spec"]["runtimeClassName"] == "kata"
    assert container(p)["resources"] == resources
    assert container(p)["resources"] is not resources["requests"]


def test_container_fields() -> None:
    agent = spec(
        command=["python", "-m", "agent"],
        args=["--fast"],
        workingDir="/workspace",
        env=[
            {"name": "A", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        envFrom=[
            {"configMapRef": {"name": "shared"}},
            {"prefix": "X_", "secretRef": {"name": "s"}},
        ],
    )
    c = container(pod(agent))
    assert c["command"] == ["python", "-m", "agent"]
    assert c["args"] == ["--fast"]
    assert c["workingDir"] == "/workspace"
    assert c["env"][4:] == [
        {"name": "A", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    assert c["envFrom"] == [
        {"configMapRef": {"name": "shared"}},
        {"prefix": "X_", "secretRef": {"name": "s"}},
    ]


def test_stockade_env_wins_over_the_users() -> None:
    agent = spec(env=[{"name": "STOCKADE_ATTEMPT", "value": "99"}, {"name": "B", "value": "2"}])
    env = container(pod(agent, attempt=2))["env"]
    assert [e["name"] for e in env].count("STOCKADE_ATTEMPT") == 1
    assert env_of(pod(agent, attempt=2))["STOCKADE_ATTEMPT"] == "2"
    assert env[-1] == {"name": "B", "value": "2"}


def test_user_env_may_refer_to_stockade_env() -> None:
    agent = spec(env=[{"name": "LOG", "value": "/workspace/$(STOCKADE_AGENT_NAME).log"}])
    names = [e["name"] for e in container(pod(agent))["env"]]
    assert names.index("STOCKADE_AGENT_NAME") < names.index("LOG")


def test_task_is_mounted_as_a_file() -> None:
    p = pod(spec(task="do it"))
    assert env_of(p)["STOCKADE_TASK_FILE"] == "/etc/stockade/task"
    assert "STOCKADE_CONFIG_DIR" not in env_of(p)
    assert volume(p, "input") == {
        "name": "input",
        "configMap": {
            "name": "demo-input",
            "items": [{"key": "task", "path": "task"}],
            "defaultMode": 0o444,
        },
    }
    assert mount(p, "input") == {"name": "input", "mountPath": "/etc/stockade", "readOnly": True}


def test_config_is_mounted_as_a_directory() -> None:
    p = pod(spec(config={"tools": "bash", "model": "m"}))
    assert env_of(p)["STOCKADE_CONFIG_DIR"] == "/etc/stockade/config"
    assert "STOCKADE_TASK_FILE" not in env_of(p)
    vol = volume(p, "input")
    assert vol is not None
    assert vol["configMap"]["items"] == [
        {"key": "config.model", "path": "config/model"},
        {"key": "config.tools", "path": "config/tools"},
    ]


def test_task_and_config_items_match_the_configmap() -> None:
    agent = spec(task="t", config={"a": "1", "b.c": "2"})
    p = pod(agent)
    cm = build_input_configmap(REF, agent)
    assert cm is not None
    vol = volume(p, "input")
    assert vol is not None
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert {item["key"] for item in vol["configMap"]["items"]} == set(cm["data"])
    assert vol["configMap"]["items"][0] == {"key": "task", "path": "task"}
    env = env_of(p)
    assert env["STOCKADE_TASK_FILE"] == "/etc/stockade/task"
    assert env["STOCKADE_CONFIG_DIR"] == "/etc/stockade/config"


def test_no_input_no_volume() -> None:
    p = pod(spec(config={}))
    assert volume(p, "input") is None
    assert mount(p, "input") is None


def test_workspace() -> None:
    agent = spec(workspace={"size": "5Gi"})
    p = pod(agent)
    pvc = build_workspace_pvc(REF, agent)
    assert pvc is not None
    assert volume(p, "workspace") == {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]},
    }
    assert mount(p, "workspace") == {"name": "workspace", "mountPath": "/workspace"}
    assert volume(pod(), "workspace") is None


def test_probes() -> None:
    agent = spec(
        livenessProbe={
            "exec": {"command": ["cat", "/tmp/heartbeat"]},
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        readinessProbe={"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 5},
    )
    c = container(pod(agent))
    assert c["livenessProbe"] == {
        "exec": {"command": ["cat", "/tmp/heartbeat"]},
        "periodSeconds": 30,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": 8080},
        "initialDelaySeconds": 5,
    }


def test_service_account_mounts_a_token() -> None:
    p = pod(spec(serviceAccountName="agent-sa"))
    assert p["spec"]["serviceAccountName"] == "agent-sa"
    assert p["spec"]["automountServiceAccountToken"] is True


def test_scheduling_fields() -> None:
    agent = spec(
        priorityClassName="agents",
        nodeSelector={"pool": "sandbox"},
        tolerations=[
            {"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        ],
    )
    s = pod(agent)["spec"]
    assert s["priorityClassName"] == "agents"
    assert s["nodeSelector"] == {"pool": "sandbox"}
    assert s["tolerations"] == [
        {"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]


def test_pod_metadata_merges_under_stockade_labels() -> None:
    # The CRD refuses stockade.dev/ keys; the builder drops any that slip through.
    agent = spec(
        podMetadata={
            "labels": {
                "team": "blue",
                "stockade.dev/agent": "forged",
                "stockade.dev/attempt": "7",
                "stockade.dev/session": "not-mine",
                "stockade.dev/egress": "internet",  # a wider shared policy's label
                "app.kubernetes.io/managed-by": "helm",
            },
            "annotations": {"user.stockade.dev/owner": "alice"},
        }
    )
    meta = pod(agent)["metadata"]
    assert meta["labels"] == {
        "team": "blue",
        "app.kubernetes.io/managed-by": "stockade",
        "stockade.dev/agent": "demo",
        "stockade.dev/attempt": "1",
        "stockade.dev/egress": "none",
    }
    assert meta["annotations"] == {"user.stockade.dev/owner": "alice"}


def test_empty_pod_metadata() -> None:
    meta = pod(spec(podMetadata={}))["metadata"]
    assert meta["labels"] == {
        **labels_for("demo"),
        "stockade.dev/attempt": "1",
        "stockade.dev/egress": "none",
    }
    assert "annotations" not in meta


def test_session_label_from_spec_or_argument() -> None:
    member = spec(sessionRef={"name": "team"})
    assert pod(member)["metadata"]["labels"]["stockade.dev/session"] == "team"
    assert pod(member, session="other")["metadata"]["labels"]["stockade.dev/session"] == "other"
    assert pod(spec(), session="s")["metadata"]["labels"]["stockade.dev/session"] == "s"
    assert "stockade.dev/session" not in pod()["metadata"]["labels"]


def test_image_is_required() -> None:
    agent = AgentSpec.model_validate({})
    with pytest.raises(SpecError) as info:
        pod(agent)
    assert info.value.field == "spec.image"


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt"):
        pod(attempt=0)


def test_does_not_alias_the_spec() -> None:
    agent = spec(nodeSelector={"a": "b"}, podMetadata={"labels": {"x": "y"}}, command=["c"])
    p = pod(agent)
    p["spec"]["nodeSelector"]["a"] = "changed"
    p["metadata"]["labels"]["x"] = "changed"
    container(p)["command"].append("more")
    assert agent.node_selector == {"a": "b"}
    assert agent.pod_metadata is not None and agent.pod_metadata.labels == {"x": "y"}
    assert agent.command == ["c"]


# --- properties over random specs ----------------------------------------------------

NAMES = st.from_regex(r"\A[a-z]([a-z0-9-]{0,10}[a-z0-9])?\Z")
TEXT = st.text(max_size=30)
SPECS = st.fixed_dictionaries(
    {"image": st.sampled_from(["busybox", "ghcr.io/x/agent:1", "reg:5000/a/b@sha256:" + "0" * 64])},
    optional={
        "sessionRef": st.fixed_dictionaries({"name": NAMES}),
        "command": st.lists(TEXT, max_size=3),
        "args": st.lists(TEXT, max_size=3),
        "env": st.lists(
            st.fixed_dictionaries(
                {"name": st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,10}\Z"), "value": TEXT}
            ),
            max_size=3,
        ),
        "workingDir": st.sampled_from(["/workspace", "/tmp"]),
        "task": TEXT,
        "config": st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9._-]{0,8}\Z"), TEXT, max_size=3),
        "workspace": st.fixed_dictionaries(
            {"size": st.sampled_from(["1Gi", "10Gi"])},
            optional={"storageClassName": NAMES, "retain": st.booleans()},
        ),
        "serviceAccountName": NAMES,
        "priorityClassName": NAMES,
        "nodeSelector": st.dictionaries(NAMES, NAMES, max_size=2),
        "podMetadata": st.fixed_dictionaries(
            {},
            optional={
                "labels": st.dictionaries(
                    st.sampled_from(["team", "example.com/x", "app.kubernetes.io/managed-by"]),
                    NAMES,
                ),
                "annotations": st.dictionaries(NAMES, TEXT, max_size=2),
            },
        ),
    },
)


@settings(max_examples=150)
@given(fields=SPECS, attempt=st.integers(min_value=1, max_value=1000))
def test_every_pod_is_restricted_owned_and_deterministic(
    fields: dict[str, Any], attempt: int
) -> None:
    agent = AgentSpec.model_validate(fields)
    p = pod(agent, attempt=attempt)
    assert p == pod(AgentSpec.model_validate(fields), attempt=attempt)
    assert restricted_violations(p) == []
    meta = p["metadata"]
    assert meta["name"] == f"demo-{attempt}"
    assert meta["ownerReferences"] == [REF.owner_reference()]
    labels = meta["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "stockade"
    assert labels["stockade.dev/agent"] == "demo"
    assert labels["stockade.dev/attempt"] == str(attempt)
    assert labels.get("stockade.dev/session") == (fields.get("sessionRef") or {}).get("name")
    s = p["spec"]
    assert s["restartPolicy"] == "Never"
    assert s["enableServiceLinks"] is False
    assert s["automountServiceAccountToken"] is ("serviceAccountName" in fields)
    c = container(p)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    names = [e["name"] for e in c["env"]]
    for reserved in ("STOCKADE_AGENT_NAME", "STOCKADE_ATTEMPT"):
        assert names.count(reserved) == 1
    assert env_of(p)["STOCKADE_ATTEMPT"] == str(attempt)
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts
    user_env = {e["name"] for e in fields.get("env", [])}
    if "HOME" not in user_env:  # the agent always gets a writable HOME
        assert env_of(p)["HOME"] in writable_mount_paths(p)
    assert ("/workspace" in mounts) == ("workspace" in fields)
    assert ("/etc/stockade" in mounts) == ("task" in fields or bool(fields.get("config")))
    assert {m["name"] for m in c["volumeMounts"]} == {v["name"] for v in s["volumes"]}
