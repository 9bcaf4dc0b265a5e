"""``kubectl stockade``: a kubectl plugin to run and inspect Agents and AgentSessions.

Installed as the console script ``kubectl-stockade`` (kubectl finds it on PATH).

- :mod:`stockade.cli.commands`: the click commands (the imperative shell).
- :mod:`stockade.cli.connection`: access to the Kubernetes API (kubeconfig, errors).
- :mod:`stockade.cli.manifest`: building an Agent manifest from flags (pure).
- :mod:`stockade.cli.format`: tables, timelines, durations, usage (pure).
- :mod:`stockade.cli.errors`: the exit codes and the error that carries one.
"""
