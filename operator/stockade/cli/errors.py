"""The plugin's exit codes and :class:`CliError`, an error that carries one.

Exit codes (documented in docs/cli.md):

- ``0`` success (``run --wait``: the Agent Succeeded)
- ``1`` failure: the Agent Failed (``run --wait``), or an error (Agent not found, API
  error, Agent not Running for ``exec``, logs unavailable)
- ``2`` usage error (bad flags or values, a spec the API models refuse)
- ``3`` timeout (``run --wait --timeout``, ``exec --timeout``)
- ``4`` Stockade is not ready on the cluster: its CRDs are not installed, or no
  operator seems to be running
- ``exec``: the command's own exit code once it ran
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
TIMEOUT = 3
NOT_INSTALLED = 4


class CliError(Exception):
    """An error to print on stderr (``error: <message>``) before exiting with ``code``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
