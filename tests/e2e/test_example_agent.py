"""The example agent (examples/agent) on the real node, against a stub model API.

The image is examples/agent/agent.sh on busybox (hack/node-up.sh builds it as its
Dockerfile lays it out); the stub is an OpenAI-compatible chat completions server in
this process, on the node's bridge address (tests/e2e/stub_model.py). The Agent gets
the API key from a Secret (env.valueFrom.secretKeyRef), Custom egress to the stub, and
a workspace; the test checks what the stub received, what the Agent's status says, and
the file the agent left in its workspace (the local PV's directory on this host).
"""

from __future__ import annotations

import os
import secrets
import time

import pytest
from kubernetes import client

from tests.e2e.conftest import (
    EXAMPLE_AGENT_IMAGE,
    NODE_IP,
    NODE_NAME,
    TIMINGS,
    real_node_placement,
    workspace,
    workspace_dir,
)
from tests.e2e.stub_model import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, StubModel
from tests.integration.cluster import Cluster
from tests.integration.operator import Agents

pytestmark = pytest.mark.e2e

START_TIMEOUT = 120
TASK = 'Fix the "off by one" bug in src/range.py.\nReport what you changed.'


def test_example_agent_calls_the_model_with_a_key_from_a_secret(
    agents: Agents, cluster: Cluster
) -> None:
    key = f"sk-e2e-{secrets.token_hex(8)}"
    cluster.core.create_namespaced_secret(
        agents.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="model-api"), string_data={"apiKey": key}
        ),
    )
    with StubModel(NODE_IP) as stub:
        start = time.monotonic()
        agents.create(
            "example",
            {
                "image": EXAMPLE_AGENT_IMAGE,
                **real_node_placement(),
                "task": TASK,
                "config": {
                    "model": "stub-model",
                    "baseURL": stub.base_url,
                    "usdPerMillionInputTokens": "2",
                    "usdPerMillionOutputTokens": "10",
                },
                "env": [
                    {
                        "name": "OPENAI_API_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "model-api", "key": "apiKey"}},
                    }
                ],
                "network": {
                    "egress": "Custom",
                    "cidrs": [f"{NODE_IP}/32"],
                    "ports": [{"port": stub.port, "protocol": "TCP"}],
                },
                "workspace": workspace(),
            },
        )
        status = agents.wait_phase("example", "Succeeded", "Failed", timeout=START_TIMEOUT)
        TIMINGS["example agent created -> Succeeded"] = time.monotonic() - start
    assert status["phase"] == "Succeeded", status
    # What the model API saw: one call, the key from the Secret, the task as the prompt.
    (request,) = stub.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers.get("Authorization") == f"Bearer {key}"
    assert request.headers.get("Content-Type") == "application/json"
    assert request.body["model"] == "stub-model"
    assert request.body["messages"][-1] == {"role": "user", "content": TASK}
    # What the Agent's status says: the answer and the usage, priced from the config.
    assert status["result"] == ANSWER
    assert status["usage"] == {
        "inputTokens": PROMPT_TOKENS,
        "outputTokens": COMPLETION_TOKENS,
        "costUSD": pytest.approx((PROMPT_TOKENS * 2 + COMPLETION_TOKENS * 10) / 1e6),
    }, status
    assert (status["exitCode"], status["attempts"]) == (0, 1)
    (pod,) = agents.pods("example")
    assert (pod.spec.node_name, pod.spec.runtime_class_name) == (NODE_NAME, "gvisor")
    # What it left in its workspace: the answer, unescaped, owned by the agent's uid.
    answer = os.path.join(
        workspace_dir(cluster, agents.namespace, "example-workspace"), "answer.md"
    )
    with open(answer, encoding="utf-8") as f:
        assert f.read() == ANSWER + "\n"
    assert os.stat(answer).st_uid == 65532
