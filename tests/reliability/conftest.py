"""Fixtures of the reliability suite (the cluster, CRD and namespace ones: tests/conftest.py).

Every test runs its own operator process (it kills and restarts it), logging JSON so
that :func:`tests.reliability.harness.log_problems` can tell an error record from an
ordinary one. The integration suite's operator is package-scoped and stopped before
these tests run: two operators never reconcile the same objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.integration.cluster import Cluster
from tests.integration.operator import OperatorProcess, running_operator

OperatorFactory = Callable[..., OperatorProcess]


def wait_for_terminating_namespaces(cluster: Cluster, timeout: float = 90) -> None:
    """Wait until no test namespace is being deleted (bounded; best effort).

    Namespaces are deleted in the background after each test. A cluster-wide operator
    started meanwhile would reconcile the dying namespace's Agents, and its log would
    blame this test for the previous one's objects.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        namespaces = cluster.core.list_namespace().items
        if not any(
            n.metadata.name.startswith("t-") and n.status.phase == "Terminating" for n in namespaces
        ):
            return
        time.sleep(0.5)


@pytest.fixture
def make_operator(cluster: Cluster, crds: None) -> Iterator[OperatorFactory]:
    """Factory: make_operator(**env) -> a started operator, stopped after the test."""
    wait_for_terminating_namespaces(cluster)
    with ExitStack() as started:

        def make(**env: str) -> OperatorProcess:
            return started.enter_context(
                running_operator(cluster, {"STOCKADE_LOG_FORMAT": "json", **env})
            )

        yield make
