"""Which optional dependencies (pyproject extras) a program of this package needs.

``pip install stockade`` is the Python client and the kubectl plugin only (issue 22);
the operator needs the ``operator`` extra and the egress gateway the ``gateway`` extra
(the image has both). A program started without its extra stops with one clear line
rather than a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util
import sys


def missing(*modules: str) -> list[str]:
    """The top-level `modules` (import names, e.g. ``"kopf"``) that cannot be imported."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require(extra: str, *modules: str) -> None:
    """Exit with status 1 and a message naming `extra` when any of `modules` is missing.

    Args:
        extra: the pyproject extra that brings `modules` (``operator``, ``gateway``).
        modules: top-level import names.

    Raises:
        SystemExit: some module is missing (the message says what to install).

    """
    absent = missing(*modules)
    if absent:
        sys.exit(
            f"stockade: {', '.join(absent)} not installed; this program needs the "
            f"'{extra}' extra: pip install 'stockade[{extra}]'"
        )
