"""Fixtures of the reliability suite (the cluster, CRD and namespace ones: tests/conftest.py).

Every test runs its own operator process (it kills and restarts it), logging JSON so
that :func:`tests.reliability.harness.log_problems` can tell an error record from an
ordinary one. The integration suite's operator is package-scoped and stopped before
these tests run: two operators never reconcile the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.cluster import Cluster
from tests.integration.operator import OperatorProcess

OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def make_operator(cluster: Cluster, crds: None) -> Iterator[OperatorFactory]:
    """Factory: make_operator(**env) -> a started operator, stopped after the test."""
    started: list[OperatorProcess] = []

    def make(**env: str) -> OperatorProcess:
        process = OperatorProcess(cluster, env={"STOCKADE_LOG_FORMAT": "json", **env})
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()
