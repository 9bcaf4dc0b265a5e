"""``python -m stockade`` / ``stockade``: run the operator.

Reads the configuration from the environment (see :mod:`stockade.config`), then runs
kopf standalone (no kopf peering: with several replicas, the Lease of
:mod:`stockade.leader` decides which one writes) cluster-wide or in the configured
namespaces, with a liveness endpoint on the health port.
"""

from __future__ import annotations

import logging
import sys

import kopf

from stockade.config import ConfigError, load_config


def main() -> int:
    """Entry point; returns the process exit code (2 for a bad configuration)."""
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"stockade: invalid configuration: {exc}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # kopf logs "Handler '...' succeeded." per handler and watch event (several per
    # Agent per second under load): noise that costs CPU. Failures are still logged.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import stockade.handlers  # noqa: F401  (registers the handlers)

    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
