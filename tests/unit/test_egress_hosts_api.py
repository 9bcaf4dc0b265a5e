"""Issue 21's API: egress Hosts (``network.hosts``) and ``spec.credentials``, in the models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stockade.api.agent import AgentSpec
from stockade.api.credentials import Credential
from stockade.api.network import EgressMode, Network, host_name
from stockade.api.session import AgentSessionSpec

HOSTS = {"egress": "Hosts", "hosts": ["api.openai.com", "*.github.com", "pypi.org:443"]}


def credential(**extra: Any) -> dict[str, Any]:
    return {
        "name": "openai",
        "secretKeyRef": {"name": "llm", "key": "api-key"},
        "hosts": ["api.openai.com"],
        **extra,
    }


def spec(**extra: Any) -> dict[str, Any]:
    return {"image": "x", "network": HOSTS, **extra}


def test_hosts_egress_parses() -> None:
    network = Network.model_validate(HOSTS)
    assert network.egress is EgressMode.HOSTS
    assert network.hosts == HOSTS["hosts"]
    assert [host_name(h) for h in network.hosts or ()] == [
        "api.openai.com",
        "*.github.com",
        "pypi.org",
    ]


@pytest.mark.parametrize(
    "hosts",
    [
        ["a.b.example.com:1"],
        ["x:65535"],
        ["*.example.com"],
        ["a-b.c0"],
    ],
)
def test_valid_hosts(hosts: list[str]) -> None:
    assert Network.model_validate({"egress": "Hosts", "hosts": hosts}).hosts == hosts


@pytest.mark.parametrize(
    "network",
    [
        {"egress": "Hosts"},
        {"egress": "Hosts", "hosts": []},
        {"egress": "DNS", "hosts": ["a.com"]},
        {"egress": "Internet", "hosts": ["a.com"]},
        {"egress": "Hosts", "hosts": ["A.com"]},
        {"egress": "Hosts", "hosts": ["a.*.com"]},
        {"egress": "Hosts", "hosts": ["*"]},
        {"egress": "Hosts", "hosts": ["**.com"]},
        {"egress": "Hosts", "hosts": ["-a.com"]},
        {"egress": "Hosts", "hosts": ["a.com:0"]},
        {"egress": "Hosts", "hosts": ["a.com:65536"]},
        {"egress": "Hosts", "hosts": ["a.com:08"]},
        {"egress": "Hosts", "hosts": ["1.2.3.4"]},
        {"egress": "Hosts", "hosts": ["10.0.0.1:443"]},
        {"egress": "Hosts", "hosts": ["http://a.com"]},
        {"egress": "Hosts", "hosts": ["a.com", "a.com"]},
        {"egress": "Hosts", "hosts": ["a" * 64 + ".com"]},
        {"egress": "Hosts", "hosts": ["a.com"], "cidrs": ["10.0.0.0/8"]},
    ],
)
def test_invalid_hosts_are_refused(network: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Network.model_validate(network)


def test_credentials_defaults_and_placeholder() -> None:
    parsed = AgentSpec.model_validate(spec(credentials=[credential(env="OPENAI_API_KEY")]))
    assert parsed.credentials is not None
    cred = parsed.credentials[0]
    assert cred.header == "Authorization"
    assert cred.value_prefix is None
    assert cred.prefix() == "Bearer "
    assert cred.placeholder() == "stockade-credential-placeholder:openai"
    other = Credential.model_validate(credential(header="X-Api-Key"))
    assert other.prefix() == ""
    lower = Credential.model_validate(credential(header="authorization"))
    assert lower.prefix() == "Bearer "
    explicit = Credential.model_validate(credential(valuePrefix="token "))
    assert explicit.prefix() == "token "
    # A wildcard entry's name may carry a credential.
    AgentSpec.model_validate(spec(credentials=[credential(hosts=["*.github.com", "pypi.org"])]))


@pytest.mark.parametrize(
    "data",
    [
        {"image": "x", "credentials": [credential()]},
        spec(network={"egress": "Internet"}, credentials=[credential()]),
        spec(credentials=[credential(hosts=["evil.example.com"])]),
        spec(credentials=[credential(hosts=["api.openai.com:443"])]),
        spec(credentials=[credential(hosts=["github.com"])]),
        spec(credentials=[credential(hosts=[])]),
        spec(credentials=[credential(), credential()]),
        spec(credentials=[credential(name="Open_AI")]),
        spec(credentials=[credential(header="Host")]),
        spec(credentials=[credential(header="proxy-authorization")]),
        spec(credentials=[credential(header="Bad Header")]),
        spec(credentials=[credential(env="1BAD")]),
        spec(
            env=[{"name": "OPENAI_API_KEY", "value": "x"}],
            credentials=[credential(env="OPENAI_API_KEY")],
        ),
        spec(credentials=[credential(env="K"), credential(name="two", env="K")]),
        spec(credentials=[credential(secretKeyRef={"name": "llm"})]),
        spec(credentials=[credential(secretKeyRef={"name": "llm", "key": "k", "optional": True})]),
    ],
)
def test_invalid_credentials_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AgentSpec.model_validate(data)


def test_member_credentials_need_a_network_of_their_own() -> None:
    """Credentials reference a Secret: the member takes no network from its session."""
    with pytest.raises(ValidationError, match="set on the Agent"):
        AgentSpec.model_validate({"sessionRef": {"name": "team"}, "credentials": [credential()]})
    AgentSpec.model_validate(
        {"sessionRef": {"name": "team"}, "network": HOSTS, "credentials": [credential()]}
    )


def test_session_defaults_allow_hosts() -> None:
    parsed = AgentSessionSpec.model_validate({"agentDefaults": {"network": HOSTS}})
    assert parsed.agent_defaults is not None
    assert parsed.agent_defaults.network is not None
    assert parsed.agent_defaults.network.egress is EgressMode.HOSTS
