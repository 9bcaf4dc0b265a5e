"""Stockade: a Kubernetes operator that runs AI agents as sandboxed pods."""

__version__ = "0.1.0.dev0"
