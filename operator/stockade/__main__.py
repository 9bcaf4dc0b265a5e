"""``python -m stockade`` / ``stockade``: run the operator.

Reads the configuration from the environment (see :mod:`stockade.config`), then runs
kopf standalone (no kopf peering: with several replicas, the Lease of
:mod:`stockade.runtime.leader` decides which one writes) cluster-wide or in the
configured namespaces, with liveness and readiness endpoints on the health port
(:mod:`stockade.runtime.health`).
"""

from __future__ import annotations

import logging
import sys

from stockade.extras import require

require("operator", "kopf", "prometheus_client", "orjson")

import kopf

from stockade.config import ConfigError, OperatorConfig, load_config
from stockade.runtime import fastjson, toggles


def configure_logging(config: OperatorConfig) -> None:
    """Set up logging for `config`: kopf's handler and format, then the level.

    ``log_level`` becomes the root logger's threshold (``debug`` ... ``error``);
    ``debug`` turns on Stockade's decision log (:mod:`stockade.runtime.decisionlog`), not kopf's
    debug output (kopf stays at info, its per-handler records at warning);
    ``warning``/``error`` is kopf's quiet mode
    (https://kopf.readthedocs.io/en/stable/configuration/#logging-formats-and-levels).
    aiohttp's access log (the health and metrics probes) stays at warnings unless
    debugging.
    """
    kopf.configure(
        debug=False,
        quiet=config.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(config.log_level.upper())
    access = logging.DEBUG if config.log_level == "debug" else logging.WARNING
    logging.getLogger("aiohttp.access").setLevel(access)
    # kopf logs "Handler '...' invoked/succeeded." per handler and watch event (several
    # per Agent per second under load): noise that costs CPU and says nothing of what
    # the operator saw or decided; failures are still logged. At debug, Stockade's
    # decision log (stockade.decisions, one record per reconcile) says that instead.
    level = logging.getLevelName(config.log_level.upper())
    logging.getLogger("kopf").setLevel(max(logging.INFO, level))
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, level))


def main() -> int:
    """Entry point; returns the process exit code (2 for a bad configuration)."""
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"stockade: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    fastjson.install()
    toggles.install()
    import stockade.handlers  # noqa: F401  (registers the handlers)

    # /healthz and /readyz are Stockade's own (stockade.runtime.health, started at start-up),
    # not kopf's liveness endpoint: they also fail when the event loop or a watch is stuck.
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
