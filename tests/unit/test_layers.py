"""The layers of operator/stockade (docs/architecture.md) import only downwards.

api, build, config, core   pure: no kopf, Kubernetes client, HTTP or metrics library,
                           and nothing of the layers above
runtime                    the machinery: may use the pure layers, never a controller
controllers, reconcile     the reconcilers: anything but the kopf handlers
handlers, __main__, cli    the entry points
apiclient                  the API client both the operator and the gateway use: imports
                           no Stockade layer
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "stockade"

# The Kubernetes client's API modules (its quantity parser, kubernetes.utils, is pure).
KUBE_CLIENT = tuple(
    f"kubernetes.{part}" for part in ("aio", "client", "config", "watch", "stream", "dynamic")
)
IO_LIBRARIES = ("kopf", "aiohttp", "prometheus_client", "opentelemetry", *KUBE_CLIENT)
ABOVE_PURE = (
    "stockade.runtime",
    "stockade.controllers",
    "stockade.reconcile",
    "stockade.handlers",
    "stockade.cli",
)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "api": IO_LIBRARIES + ABOVE_PURE,
    "build": IO_LIBRARIES + ABOVE_PURE,
    "core": IO_LIBRARIES + ABOVE_PURE,
    "config": IO_LIBRARIES + ABOVE_PURE,
    "runtime": ("stockade.controllers", "stockade.reconcile", "stockade.handlers", "stockade.cli"),
    "controllers": ("stockade.handlers", "stockade.cli"),
    # The Python client (issue 22) must install without the operator's dependencies.
    "client": (
        "kopf",
        "prometheus_client",
        "opentelemetry",
        "stockade.runtime",
        "stockade.controllers",
        "stockade.reconcile",
        "stockade.handlers",
        "stockade.cli",
        "stockade.gateway",
    ),
    "apiclient": (
        *ABOVE_PURE,
        "stockade.api",
        "stockade.build",
        "stockade.core",
        "stockade.gateway",
    ),
}


def imports(source: str) -> set[str]:
    """The modules a source file imports (``from x import y`` also as ``x.y``; a bare
    ``import kubernetes`` counts as its API client)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            found.update("kubernetes.client" for a in node.names if a.name == "kubernetes")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(layer: str, source: str) -> list[str]:
    """The imports of `source` (a module of `layer`) that reach a forbidden layer."""
    banned = FORBIDDEN.get(layer, ())
    return sorted(
        name
        for name in imports(source)
        if any(name == b or name.startswith(b + ".") for b in banned)
    )


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_imports_only_downwards(path: Path) -> None:
    assert violations(layer_of(path), path.read_text()) == []


def test_an_upward_import_is_caught() -> None:
    assert violations("core", "from stockade.runtime import metrics\nimport kopf\n") == [
        "kopf",
        "stockade.runtime",
        "stockade.runtime.metrics",
    ]
    assert violations("runtime", "from stockade import reconcile\n") == ["stockade.reconcile"]


def test_the_layers_exist() -> None:
    assert {layer_of(p) for p in MODULES} >= {"api", "build", "core", "runtime", "handlers"}


def test_no_module_over_600_lines_and_no_class_over_400() -> None:
    """Small modules whose names say what they hold (docs/architecture.md)."""
    big: list[str] = []
    for path in MODULES:
        source = path.read_text()
        if source.count("\n") > 600:
            big.append(f"{path.relative_to(PACKAGE)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 400:
                big.append(f"{path.relative_to(PACKAGE)}: class {node.name}")
    assert big == []
