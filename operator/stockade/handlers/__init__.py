"""kopf handlers: thin adapters from watch events to the reconciler.

Importing this package registers every handler with kopf's default registry.
"""

from stockade.handlers import agents, operator

__all__ = ["agents", "operator"]
