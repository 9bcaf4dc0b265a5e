"""The pure core: Stockade's rules, with no I/O and no kopf or Kubernetes client imports.

The lifecycle and session state machines, admission, observation of pods, ownership and
drift plans, reasons and conditions, backoff, the policy checks. Everything here is a
function of its arguments (tests/unit/test_layers.py keeps it so); see
docs/architecture.md for the layers.
"""
