"""The reasons an Agent's status gives (``status.reason``, conditions' ``reason``).

CamelCase, as the API conventions ask of a condition's reason: one value per cause,
stable across releases (alerts and dashboards match on them).
"""

from __future__ import annotations

from enum import StrEnum

from stockade.core.observe import PodView


class Reason(StrEnum):
    """The closed set of reasons Stockade writes (``status.reason``, conditions, Events).

    Failure reasons (``Failed`` phase, ``Stalled=True``): DeadlineExceeded,
    StartupTimeout, BackoffLimitExceeded, Error, OOMKilled, ImagePullFailed, Evicted,
    PodLost, InvalidSpec, NamespaceNotAllowed (the Agent is in ``kube-system``,
    ``kube-public``, ``kube-node-lease`` or the operator's own namespace, where Agents
    never run: :mod:`stockade.core.policy`), ReferenceNotAllowed (the Agent references a
    ServiceAccount, Secret or ConfigMap while the chart's ValidatingAdmissionPolicy,
    which checks its author's rights to them, is absent), EgressDenied (a Custom
    egress CIDR overlaps a denied range: link-local, a cloud metadata address, the API
    server's, or one of the operator's ``egressDeniedCidrs``), OwnImageRequired (a member
    with its own ServiceAccount, Secret or ConfigMap references sets no image: it takes
    no code from its session, :func:`stockade.core.spec.member_defaults`),
    GatewayNotConfigured (egress Hosts while the operator knows no egress gateway:
    ``STOCKADE_GATEWAY_ADDRESS`` or its namespace is unset). Waiting reasons
    (``Admitted=False``): SessionFull, BudgetExceeded, SessionNotFound, SessionSuspended,
    QuotaExceeded,
    RuntimeClassNotFound, PodRejected, ResourceConflict (a child's name is taken by an
    object this Agent does not own). Progress reasons: the rest.
    """

    CREATED = "Created"
    ADMITTED = "Admitted"
    POD_CREATED = "PodCreated"
    CONTAINER_CREATING = "ContainerCreating"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    POD_RUNNING = "PodRunning"
    NOT_READY = "NotReady"
    COMPLETED = "Completed"
    BACK_OFF = "BackOff"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    DELETED = "Deleted"
    FINISHED = "Finished"
    NOT_SUSPENDED = "NotSuspended"
    # failures
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    STARTUP_TIMEOUT = "StartupTimeout"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    EVICTED = "Evicted"
    POD_LOST = "PodLost"
    INVALID_SPEC = "InvalidSpec"
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    REFERENCE_NOT_ALLOWED = "ReferenceNotAllowed"
    EGRESS_DENIED = "EgressDenied"
    OWN_IMAGE_REQUIRED = "OwnImageRequired"
    GATEWAY_NOT_CONFIGURED = "GatewayNotConfigured"
    # waiting for admission
    SESSION_FULL = "SessionFull"
    BUDGET_EXCEEDED = "BudgetExceeded"
    SESSION_NOT_FOUND = "SessionNotFound"
    SESSION_SUSPENDED = "SessionSuspended"
    SESSION_FINISHED = "SessionFinished"
    AWAITING_ADMISSION = "AwaitingAdmission"
    QUOTA_EXCEEDED = "QuotaExceeded"
    RUNTIME_CLASS_NOT_FOUND = "RuntimeClassNotFound"
    POD_REJECTED = "PodRejected"
    RESOURCE_CONFLICT = "ResourceConflict"
    POD_TERMINATING = "PodTerminating"


STALLING_REASONS = frozenset(
    {
        Reason.RUNTIME_CLASS_NOT_FOUND,
        Reason.POD_REJECTED,
        Reason.INVALID_SPEC,
        Reason.NAMESPACE_NOT_ALLOWED,
        Reason.REFERENCE_NOT_ALLOWED,
        Reason.EGRESS_DENIED,
        Reason.OWN_IMAGE_REQUIRED,
        Reason.GATEWAY_NOT_CONFIGURED,
    }
)
"""Reasons that stall a Pending Agent: waiting will not fix them (``Stalled=True``)."""

WARNING_REASONS = STALLING_REASONS | {
    Reason.DEADLINE_EXCEEDED,
    Reason.STARTUP_TIMEOUT,
    Reason.BACKOFF_LIMIT_EXCEEDED,
    Reason.ERROR,
    Reason.OOM_KILLED,
    Reason.IMAGE_PULL_FAILED,
    Reason.EVICTED,
    Reason.POD_LOST,
    Reason.QUOTA_EXCEEDED,
    Reason.RESOURCE_CONFLICT,
}
"""Reasons whose Events are ``Warning`` (the others are ``Normal``): the stalling ones and more."""


def failure_of(pod: PodView) -> tuple[Reason, str]:
    """Classify a Failed pod: the reason and a human message."""
    term = pod.terminated
    if pod.reason == "Evicted":
        return Reason.EVICTED, pod.message or "the pod was evicted"
    if term is not None and term.reason == "OOMKilled":
        return (
            Reason.OOM_KILLED,
            f"the agent container ran out of memory (exit code {term.exit_code})",
        )
    if term is not None:
        detail = f": {term.message.strip()[:512]}" if term.message.strip() else ""
        return Reason.ERROR, f"the agent container exited with code {term.exit_code}{detail}"
    return Reason.POD_LOST, pod.message or f"pod {pod.name} failed ({pod.reason or 'no reason'})"
