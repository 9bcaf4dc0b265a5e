"""Who is calling: the pod behind a source IP, proven by its per-pod proxy token.

A caller is accepted only if (contract of issue 21):

- exactly one indexed pod has ``status.podIP`` == the connection's source address, is
  ``Running`` and not being deleted, and has a controller ownerReference to a
  ``stockade.dev/v1alpha1`` ``Agent``;
- the ``Proxy-Authorization: Basic`` password's sha256 (hex) equals the pod's
  ``stockade.dev/gateway-token-sha256`` annotation (compared in constant time).

Its allowed hosts are the pod's ``stockade.dev/gateway-hosts`` annotation (a JSON list of
``network.hosts`` strings). Everything else is a :class:`Refusal` (407).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stockade.build.names import AGENT_API_VERSION, AGENT_LABEL
from stockade.gateway.hosts import HostPattern, parse_patterns

TOKEN_ANNOTATION = "stockade.dev/gateway-token-sha256"
HOSTS_ANNOTATION = "stockade.dev/gateway-hosts"
AGENT_KIND = "Agent"
PROXY_USER = "stockade"
"""The user name of the proxy URL (``http://stockade:<token>@gateway``); not checked."""


@dataclass(frozen=True)
class PodView:
    """What the gateway needs of a pod (built by :func:`pod_view` from the API object).

    Attributes:
        namespace, name: the pod's.
        ip: ``status.podIP`` ("" when not assigned).
        phase: ``status.phase``.
        deleting: ``metadata.deletionTimestamp`` is set.
        agent_name, agent_uid: of the controller ownerReference when it is an Agent of
            ``stockade.dev/v1alpha1``, else "".
        token_sha256: the token annotation (lower-case hex), "" when absent.
        hosts: the parsed hosts annotation (empty when absent or not a JSON string list).

    """

    namespace: str
    name: str
    ip: str
    phase: str
    deleting: bool
    agent_name: str
    agent_uid: str
    token_sha256: str
    hosts: tuple[HostPattern, ...]

    @property
    def agent_key(self) -> tuple[str, str, str]:
        """``(namespace, agent name, agent uid)``: the key of the owning Agent's read."""
        return (self.namespace, self.agent_name, self.agent_uid)


def _controller_agent(owners: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    for owner in owners:
        if owner.get("controller") is True:
            if owner.get("apiVersion") == AGENT_API_VERSION and owner.get("kind") == AGENT_KIND:
                return str(owner.get("name") or ""), str(owner.get("uid") or "")
            return "", ""
    return "", ""


def parse_hosts_annotation(text: str | None) -> tuple[HostPattern, ...]:
    """Parse the ``stockade.dev/gateway-hosts`` annotation (a JSON list of strings).

    Returns:
        the valid patterns; nothing for an absent or malformed annotation (allows nothing).

    """
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return ()
    patterns, _ = parse_patterns(value)
    return patterns


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Build a :class:`PodView` from a pod object (a dict as the API returns it, camelCase)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations = metadata.get("annotations") or {}
    agent_name, agent_uid = _controller_agent(metadata.get("ownerReferences") or ())
    return PodView(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        ip=str(status.get("podIP") or ""),
        phase=str(status.get("phase") or ""),
        deleting=metadata.get("deletionTimestamp") is not None,
        agent_name=agent_name,
        agent_uid=agent_uid,
        token_sha256=str(annotations.get(TOKEN_ANNOTATION) or "").lower(),
        hosts=parse_hosts_annotation(annotations.get(HOSTS_ANNOTATION)),
    )


def agent_label_of(pod: Mapping[str, Any]) -> str:
    """The pod's ``stockade.dev/agent`` label ("" when absent): for logs only, never trust."""
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(AGENT_LABEL) or "")


@dataclass(frozen=True)
class Refusal:
    """The caller is not accepted (407). `reason` is a short word for audit and metrics."""

    reason: str
    pod: PodView | None = None


def basic_password(header: str | None) -> str | None:
    """The password of a ``Proxy-Authorization: Basic <base64(user:password)>`` value, or None.

    None for an absent header, another scheme, bad base64 or no ``:``.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def token_sha256(token: str) -> str:
    """The lower-case hex sha256 of `token` (UTF-8), as the pod's annotation holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def identify(
    pods: Iterable[PodView], source_ip: str, proxy_authorization: str | None
) -> PodView | Refusal:
    """Decide who is calling from `source_ip` with the given ``Proxy-Authorization`` value.

    Args:
        pods: the indexed pods whose ``status.podIP`` is `source_ip` (any others are
            ignored).
        source_ip: the peer address of the connection (text form).
        proxy_authorization: the header's value, or None.

    Returns:
        the caller's pod, or a :class:`Refusal` with reason ``no-pod`` (no live Agent pod
        has that IP), ``ambiguous`` (more than one has), ``not-agent`` (no Agent
        controller), ``no-credentials``, ``no-token`` (the pod has no token annotation)
        or ``bad-token``.

    """
    live = [
        pod for pod in pods if pod.ip == source_ip and pod.phase == "Running" and not pod.deleting
    ]
    if not live:
        return Refusal("no-pod")
    if len(live) > 1:
        return Refusal("ambiguous")
    pod = live[0]
    if not pod.agent_name or not pod.agent_uid:
        return Refusal("not-agent", pod)
    password = basic_password(proxy_authorization)
    if password is None:
        return Refusal("no-credentials", pod)
    if not pod.token_sha256:
        return Refusal("no-token", pod)
    if not hmac.compare_digest(token_sha256(password), pod.token_sha256):
        return Refusal("bad-token", pod)
    return pod
