"""The pod of one attempt of an Agent: hardened, sandboxed, owned by the Agent.

The pod complies with the Pod Security Standard ``restricted``
(https://kubernetes.io/docs/concepts/security/pod-security-standards/): non-root
(UID/GID 65532, the distroless "nonroot" user; with ``agent_uid`` ``platform``, the
platform's), no privilege escalation, every capability dropped, seccomp
``RuntimeDefault``, only configMap/emptyDir/PVC volumes. On top of that the root
filesystem is read-only (``/tmp`` is an emptyDir), no API token is mounted unless the
Agent names a ServiceAccount, and no service environment variables are injected.

``restartPolicy`` is always ``Never``: the operator makes each retry a new pod
``<agent>-<attempt>``, so every attempt has its own exit code, termination message and
timestamps, and ``spec.backoffLimit`` counts pods.

Layout inside the container:

- ``/etc/stockade/task``: ``spec.task`` (env ``STOCKADE_TASK_FILE``), read-only;
- ``/etc/stockade/config/<key>``: each ``spec.config`` entry (env
  ``STOCKADE_CONFIG_DIR``), read-only;
- ``/workspace``: the workspace claim, when ``spec.workspace`` is set;
- ``HOME``: ``/workspace`` when there is a workspace, else ``/home/agent``, an emptyDir;
  ``XDG_CACHE_HOME`` is ``$HOME/.cache``, so git, npm, pip and most CLIs find a
  writable home and cache (an Agent's own ``env`` may set either instead);
- ``/tmp``: a scratch emptyDir;
- ``/dev/termination-log``: where the agent writes its result (at most 4 KiB);
- egress Hosts (issue 21, :class:`GatewayAccess`): ``HTTPS_PROXY``/``HTTP_PROXY`` (and
  their lower-case forms) name the egress gateway with the pod's token, ``NO_PROXY``
  the loopback; with the gateway's CA copied into the input ConfigMap,
  ``/etc/stockade-gateway/ca-bundle.crt`` (public roots plus the gateway CA: env
  ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``GIT_SSL_CAINFO``,
  ``PIP_CERT``) and ``/etc/stockade-gateway/ca.crt`` (``NODE_EXTRA_CA_CERTS``); the
  annotations ``stockade.dev/gateway-hosts`` (JSON list of ``network.hosts``) and
  ``stockade.dev/gateway-token-sha256`` tell the gateway what the pod may reach and
  how it proves who it is; each ``credentials[].env`` holds a placeholder.

The emptyDirs' ``sizeLimit`` comes from the operator's configuration
(``tmp_size_limit``, ``home_size_limit``: 1Gi each by default); all of them count
against the container's ``ephemeral-storage`` limit
(https://kubernetes.io/docs/concepts/storage/volumes/#emptydir).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from stockade.api.agent import AgentSpec
from stockade.build.configmap import (
    GATEWAY_CA_KEYS,
    GATEWAY_KEY_PREFIX,
    TASK_KEY,
    config_items,
    has_input,
    uses_gateway,
)
from stockade.build.errors import SpecError
from stockade.build.names import (
    ATTEMPT_LABEL,
    EGRESS_LABEL,
    AgentRef,
    child_metadata,
    configmap_name,
    pod_name,
    pvc_name,
    session_of,
)
from stockade.build.network import egress_label
from stockade.config import OperatorConfig

CONTAINER_NAME = "agent"
NONROOT_ID = 65532
INPUT_DIR = "/etc/stockade"
TASK_FILE = f"{INPUT_DIR}/task"
CONFIG_DIR = f"{INPUT_DIR}/config"
WORKSPACE_DIR = "/workspace"
TMP_DIR = "/tmp"
HOME_DIR = "/home/agent"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"

ENV_AGENT_NAME = "STOCKADE_AGENT_NAME"
ENV_ATTEMPT = "STOCKADE_ATTEMPT"
ENV_TASK_FILE = "STOCKADE_TASK_FILE"
ENV_CONFIG_DIR = "STOCKADE_CONFIG_DIR"
RESERVED_ENV = frozenset({ENV_AGENT_NAME, ENV_ATTEMPT, ENV_TASK_FILE, ENV_CONFIG_DIR})
"""Variables Stockade always sets: an Agent's ``env`` entry of the same name is dropped."""
ENV_HOME = "HOME"
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
"""Variables Stockade sets unless the Agent's ``env`` names them (the user's wins)."""

GATEWAY_CA_DIR = "/etc/stockade-gateway"
"""Where a Hosts pod finds the gateway's CA (``ca.crt``, ``ca-bundle.crt``)."""
GATEWAY_HOSTS_ANNOTATION = "stockade.dev/gateway-hosts"
"""JSON list of the pod's effective ``network.hosts`` (the gateway's allow-list)."""
GATEWAY_TOKEN_ANNOTATION = "stockade.dev/gateway-token-sha256"
"""Hex sha256 of the pod's gateway token (its proxy password)."""
GATEWAY_USER = "stockade"
"""The user name of the proxy URL (the gateway checks only the password)."""
PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_ENV = ("NO_PROXY", "no_proxy")
NO_PROXY = "localhost,127.0.0.1,::1"
CA_BUNDLE_ENV = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
)
CA_ENV = "NODE_EXTRA_CA_CERTS"
GATEWAY_ENV = frozenset({*PROXY_ENV, *NO_PROXY_ENV, *CA_BUNDLE_ENV, CA_ENV})
"""Variables Stockade sets on a Hosts pod: an Agent's ``env`` entry of the same name is
dropped (the gateway is the pod's only way out)."""


@dataclass(frozen=True)
class GatewayAccess:
    """What the pod of an Agent with egress Hosts needs of the egress gateway.

    Attributes:
        address: ``host:port`` of the gateway (``STOCKADE_GATEWAY_ADDRESS``).
        token: the pod's random token (``secrets.token_urlsafe(32)``, made by the shell
            for each pod): its proxy password; the pod carries its sha256.
        ca: whether the Agent's input ConfigMap holds the gateway's CA
            (:func:`stockade.build.configmap.gateway_ca_data`).

    """

    address: str
    token: str
    ca: bool = False

    def proxy_url(self) -> str:
        """``http://stockade:<token>@<address>``."""
        return f"http://{GATEWAY_USER}:{self.token}@{self.address}"

    def token_sha256(self) -> str:
        """Hex sha256 of the token."""
        return hashlib.sha256(self.token.encode()).hexdigest()


_DEFAULT_CONFIG = OperatorConfig()

SECCOMP_RUNTIME_DEFAULT: dict[str, str] = {"type": "RuntimeDefault"}


def _dump(model: BaseModel) -> dict[str, Any]:
    """Dump a pydantic sub-model as its Kubernetes JSON shape (camelCase, no nulls)."""
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def pod_security_context(uid: int | Literal["platform"] = NONROOT_ID) -> dict[str, Any]:
    """Return the pod securityContext (restricted: non-root, seccomp RuntimeDefault).

    Args:
        uid: the uid, gid and fsGroup (default 65532), or ``"platform"`` to leave them
            to the platform (OpenShift's ``restricted-v2`` SCC assigns them from the
            namespace's range); ``runAsNonRoot`` is set either way.

    ``fsGroupChangePolicy: OnRootMismatch`` spares a large workspace a recursive chown at
    every attempt.

    """
    ids: dict[str, Any] = {}
    if uid != "platform":
        ids = {
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "fsGroupChangePolicy": "OnRootMismatch",
        }
    return {"runAsNonRoot": True, **ids, "seccompProfile": dict(SECCOMP_RUNTIME_DEFAULT)}


def container_security_context() -> dict[str, Any]:
    """Return the container securityContext (restricted, plus a read-only root fs)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": dict(SECCOMP_RUNTIME_DEFAULT),
    }


def home_dir(spec: AgentSpec) -> str:
    """The agent's ``HOME``: the workspace when it has one, else :data:`HOME_DIR`."""
    return WORKSPACE_DIR if spec.workspace is not None else HOME_DIR


def _gateway_env(spec: AgentSpec, gateway: GatewayAccess) -> list[dict[str, Any]]:
    """The proxy, CA and credential placeholder variables of a Hosts pod."""
    url = gateway.proxy_url()
    env: list[dict[str, Any]] = [{"name": name, "value": url} for name in PROXY_ENV]
    env.extend({"name": name, "value": NO_PROXY} for name in NO_PROXY_ENV)
    if gateway.ca:
        bundle = f"{GATEWAY_CA_DIR}/ca-bundle.crt"
        env.extend({"name": name, "value": bundle} for name in CA_BUNDLE_ENV)
        env.append({"name": CA_ENV, "value": f"{GATEWAY_CA_DIR}/ca.crt"})
    env.extend(
        {"name": cred.env, "value": cred.placeholder()}
        for cred in spec.credentials or ()
        if cred.env is not None
    )
    return env


def _env(
    agent_meta: AgentRef, spec: AgentSpec, attempt: int, gateway: GatewayAccess | None = None
) -> list[dict[str, Any]]:
    """List Stockade's variables, then the user's env (minus the names Stockade sets).

    Stockade's come first so that the user's values may refer to them (``$(VAR)`` only
    expands variables defined earlier). ``HOME`` and ``XDG_CACHE_HOME`` are left to
    the user's env when it sets them. With `gateway` (egress Hosts) the proxy, CA and
    credential variables are Stockade's too (:data:`GATEWAY_ENV`).
    """
    env: list[dict[str, Any]] = [
        {"name": ENV_AGENT_NAME, "value": agent_meta.name},
        {"name": ENV_ATTEMPT, "value": str(attempt)},
    ]
    if spec.task is not None:
        env.append({"name": ENV_TASK_FILE, "value": TASK_FILE})
    if spec.config:
        env.append({"name": ENV_CONFIG_DIR, "value": CONFIG_DIR})
    users = {var.name for var in spec.env or ()}
    home = home_dir(spec)
    if ENV_HOME not in users:
        env.append({"name": ENV_HOME, "value": home})
    if ENV_XDG_CACHE_HOME not in users:
        env.append({"name": ENV_XDG_CACHE_HOME, "value": f"{home}/.cache"})
    reserved: set[str] = set(RESERVED_ENV)
    if gateway is not None:
        extra = _gateway_env(spec, gateway)
        env.extend(extra)
        reserved.update(var["name"] for var in extra)
    env.extend(_dump(var) for var in spec.env or () if var.name not in reserved)
    return env


def _volumes(
    agent_meta: AgentRef, spec: AgentSpec, config: OperatorConfig, gateway_ca: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(volumes, volumeMounts)``: /tmp, home (without a workspace), input, workspace.

    With `gateway_ca` also the gateway CA's keys of the input ConfigMap at
    :data:`GATEWAY_CA_DIR`: a volume of its own, ``optional`` (a ConfigMap made before
    the CA was known lacks the keys; the pod still starts).
    """
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size_limit}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": TMP_DIR}]
    if spec.workspace is None:
        volumes.append({"name": "home", "emptyDir": {"sizeLimit": config.home_size_limit}})
        mounts.append({"name": "home", "mountPath": HOME_DIR})
    if has_input(spec):
        items: list[dict[str, str]] = []
        if spec.task is not None:
            items.append({"key": TASK_KEY, "path": "task"})
        items.extend({"key": cm_key, "path": f"config/{key}"} for cm_key, key in config_items(spec))
        volumes.append(
            {
                "name": "input",
                "configMap": {
                    "name": configmap_name(agent_meta.name),
                    "items": items,
                    "defaultMode": 0o444,
                },
            }
        )
        mounts.append({"name": "input", "mountPath": INPUT_DIR, "readOnly": True})
    if gateway_ca:
        volumes.append(
            {
                "name": "gateway-ca",
                "configMap": {
                    "name": configmap_name(agent_meta.name),
                    "items": [
                        {"key": f"{GATEWAY_KEY_PREFIX}{key}", "path": key}
                        for key in GATEWAY_CA_KEYS
                    ],
                    "defaultMode": 0o444,
                    "optional": True,
                },
            }
        )
        mounts.append({"name": "gateway-ca", "mountPath": GATEWAY_CA_DIR, "readOnly": True})
    if spec.workspace is not None:
        volumes.append(
            {
                "name": "workspace",
                "persistentVolumeClaim": {"claimName": pvc_name(agent_meta.name)},
            }
        )
        mounts.append({"name": "workspace", "mountPath": WORKSPACE_DIR})
    return volumes, mounts


def build_pod(
    agent_meta: AgentRef,
    spec: AgentSpec,
    *,
    attempt: int,
    runtime_class: str,
    resources: dict[str, dict[str, str]],
    session: str | None = None,
    config: OperatorConfig | None = None,
    gateway: GatewayAccess | None = None,
) -> dict[str, Any]:
    """Build the core/v1 Pod of attempt `attempt` of the Agent (pure, deterministic).

    Args:
        agent_meta: the owning Agent.
        spec: its validated spec (session defaults already merged in).
        attempt: the attempt number (>= 1); part of the name ``<agent>-<attempt>``, the
            label ``stockade.dev/attempt`` and the env ``STOCKADE_ATTEMPT``. The label
            ``stockade.dev/egress`` says which NetworkPolicy fences the pod
            (:func:`~stockade.build.network.egress_label`).
        runtime_class: the resolved RuntimeClass
            (:func:`~stockade.build.runtime.resolve_runtime_class`).
        resources: the container's ``{"requests": ..., "limits": ...}``
            (:func:`~stockade.build.resources.effective_resources`), used as given.
        session: the AgentSession name for the ``stockade.dev/session`` label; default
            ``spec.sessionRef.name``.
        config: the operator configuration (the emptyDirs' size limits, the agent uid); None: the
            defaults.
        gateway: the egress gateway's address, the pod's token and whether the CA was
            copied (:class:`GatewayAccess`); required for egress Hosts, ignored
            otherwise.

    Returns:
        The Pod manifest; see the module docstring for what it holds.

    Raises:
        SpecError: ``spec.image`` is unset, a config key is invalid, or the egress is
            Hosts without `gateway`.
        ValueError: `attempt` < 1.

    """
    if not spec.image:
        raise SpecError("spec.image", "an image is required")
    name = pod_name(agent_meta.name, attempt)
    pod_meta = spec.pod_metadata
    metadata = child_metadata(
        agent_meta,
        name,
        session if session is not None else session_of(spec),
        extra_labels=dict(pod_meta.labels or {}) if pod_meta else None,
    )
    metadata["labels"][ATTEMPT_LABEL] = str(attempt)
    metadata["labels"][EGRESS_LABEL] = egress_label(spec.network)
    if pod_meta and pod_meta.annotations:
        metadata["annotations"] = dict(pod_meta.annotations)
    if not uses_gateway(spec):
        gateway = None
    elif gateway is None:
        raise SpecError(
            "spec.network.egress",
            "Hosts egress needs the egress gateway (STOCKADE_GATEWAY_ADDRESS)",
        )
    else:
        assert spec.network is not None
        annotations = metadata.setdefault("annotations", {})
        annotations[GATEWAY_HOSTS_ANNOTATION] = json.dumps(
            list(spec.network.hosts or ()), separators=(",", ":")
        )
        annotations[GATEWAY_TOKEN_ANNOTATION] = gateway.token_sha256()

    volumes, mounts = _volumes(
        agent_meta, spec, config or _DEFAULT_CONFIG, gateway is not None and gateway.ca
    )
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": spec.image}
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    container["env"] = _env(agent_meta, spec, attempt, gateway)
    if spec.env_from:
        container["envFrom"] = [_dump(source) for source in spec.env_from]
    container["resources"] = {
        "requests": dict(resources.get("requests") or {}),
        "limits": dict(resources.get("limits") or {}),
    }
    container["volumeMounts"] = mounts
    if spec.liveness_probe is not None:
        container["livenessProbe"] = _dump(spec.liveness_probe)
    if spec.readiness_probe is not None:
        container["readinessProbe"] = _dump(spec.readiness_probe)
    container["securityContext"] = container_security_context()
    container["terminationMessagePath"] = TERMINATION_MESSAGE_PATH
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "runtimeClassName": runtime_class,
        "automountServiceAccountToken": bool(spec.service_account_name),
        "enableServiceLinks": False,
        "securityContext": pod_security_context((config or _DEFAULT_CONFIG).agent_uid),
        "containers": [container],
        "volumes": volumes,
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [_dump(toleration) for toleration in spec.tolerations]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
