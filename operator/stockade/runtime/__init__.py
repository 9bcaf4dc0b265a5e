"""The runtime: the machinery the controllers run on, and no domain rules.

The API client (:mod:`.k8s`), work queues, leader election, health, metrics, tracing,
the decision log, and the adjustments of kopf and the client library (:mod:`.toggles`,
:mod:`.fastjson`). It never imports the controllers (tests/unit/test_layers.py); see
docs/architecture.md.
"""
