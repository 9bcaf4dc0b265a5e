"""The gateway's functional core stays pure, and the gateway never uses the operator's runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_layers import IO_LIBRARIES, imports

GATEWAY = Path(__file__).resolve().parents[2] / "operator" / "stockade" / "gateway"
PURE = [
    "hosts",
    "guard",
    "identity",
    "credentials",
    "audit",
    "wire",
    "certs",
    "config",
    "usage",
    "ledger",
]
OPERATOR_ONLY = (
    "stockade.runtime",
    "stockade.controllers",
    "stockade.reconcile",
    "stockade.handlers",
    "stockade.cli",
    "stockade.core",
)
SHELL = (
    "asyncio",
    "socket",
    "ssl",
    "stockade.gateway.metrics",
    "stockade.gateway.kube",
    "stockade.gateway.proxy",
    "stockade.gateway.relay",
    "stockade.gateway.index",
    "stockade.gateway.metering",
)


def banned(source: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        n for n in imports(source) if any(n == p or n.startswith(p + ".") for p in prefixes)
    )


@pytest.mark.parametrize("name", PURE)
def test_the_core_has_no_io(name: str) -> None:
    assert banned((GATEWAY / f"{name}.py").read_text(), IO_LIBRARIES + SHELL + OPERATOR_ONLY) == []


@pytest.mark.parametrize("path", sorted(GATEWAY.glob("*.py")), ids=lambda p: p.name)
def test_no_gateway_module_uses_the_operators_runtime(path: Path) -> None:
    assert banned(path.read_text(), OPERATOR_ONLY) == []


def test_the_check_catches_io() -> None:
    source = "import asyncio\nfrom kubernetes.aio import client\nfrom stockade.runtime import k8s\n"
    assert banned(source, IO_LIBRARIES + SHELL + OPERATOR_ONLY) == [
        "asyncio",
        "kubernetes.aio",
        "kubernetes.aio.client",
        "stockade.runtime",
        "stockade.runtime.k8s",
    ]
