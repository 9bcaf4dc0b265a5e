"""What every controller of one operator process works with, built once.

The Agent and AgentSession controllers (:mod:`stockade.controllers.agent`,
:mod:`stockade.controllers.session`) share the API client, the settings, the read cache,
the echo tracker, the two work queues' schedulers and three facts the process learns at
run time. :class:`stockade.reconcile.Reconciler` builds one :class:`Context` and hands it
to both (as a kubebuilder manager hands its client and cache to each reconciler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stockade.config import OperatorConfig
from stockade.runtime.cache import AgentKey, Cache
from stockade.runtime.echoes import Echoes
from stockade.runtime.k8s import KubeApi


@dataclass(frozen=True)
class Context:
    """The collaborators the Agent and session controllers share.

    Attributes:
        kube: the API client (:class:`stockade.runtime.k8s.KubeApi`).
        config: the operator's settings.
        cache: the read model over kopf's indexes.
        echoes: the writes this process made and has not yet seen come back.
        poke_agent / poke_session: schedule a reconcile of an Agent / of a session
            (``(key, delay in seconds)``).
        leading: whether this replica may write (it holds the Lease).
        policy_present: whether the chart's admission policy binding was found.
        api_server_cidrs: the API server's addresses as CIDRs (None: not known), which
            Custom egress may not reach.

    """

    kube: KubeApi
    config: OperatorConfig
    cache: Cache
    echoes: Echoes
    poke_agent: Callable[[AgentKey, float], None]
    poke_session: Callable[[AgentKey, float], None]
    leading: Callable[[], bool]
    policy_present: Callable[[], bool]
    api_server_cidrs: Callable[[], tuple[str, ...] | None]
