"""Pure builders of an Agent's child objects (pod, ConfigMap, PVC, NetworkPolicy).

Every function here is pure: it takes the Agent's validated spec (``stockade.api.agent``)
and the operator's configuration, and returns a plain ``dict`` that is a Kubernetes
manifest ready for the API server. No I/O; the same input always gives the same output.
"""
