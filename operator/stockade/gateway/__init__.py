"""The egress gateway (issue 21): an HTTP forward proxy the agent pods of ``Hosts`` egress use.

A component of its own, run by ``python -m stockade.gateway`` as its own Deployment; it
shares the API names with the operator (``stockade.api``, ``stockade.build.names``) and
never the operator's runtime. Functional core, imperative shell:

pure       ``hosts`` (host patterns), ``guard`` (addresses after resolution), ``identity``
           (who is calling), ``credentials`` (which header a host gets), ``audit`` (the
           record), ``wire`` (HTTP/1.1 heads and the TLS ClientHello's SNI), ``certs`` (the
           CA and per-host leaf certificates), ``config`` (the environment)
shell      ``sources`` (pods and Agents: static for tests), ``index`` (the pod index),
           ``kube`` (the pod watch, the Agent and Secret reads, the CA bootstrap),
           ``metrics``, ``leaves`` (interception leaves), ``proxy`` and ``relay`` (the
           asyncio server), ``__main__`` (the process)

docs/architecture.md ("The egress gateway") describes the request path.
"""
