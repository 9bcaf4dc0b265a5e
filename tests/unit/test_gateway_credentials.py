from __future__ import annotations

import pytest

from stockade.gateway.credentials import (
    Credential,
    CredentialError,
    apply_headers,
    parse_credentials,
    render,
    select,
)

SPEC = {
    "credentials": [
        {
            "name": "openai",
            "secretKeyRef": {"name": "keys", "key": "openai"},
            "hosts": ["api.openai.com"],
            "env": "OPENAI_API_KEY",
        },
        {
            "name": "anthropic",
            "secretKeyRef": {"name": "keys", "key": "anthropic"},
            "hosts": ["api.anthropic.com"],
            "header": "x-api-key",
        },
        {
            "name": "gh",
            "secretKeyRef": {"name": "gh", "key": "token"},
            "hosts": ["*.github.com"],
            "header": "Authorization",
            "valuePrefix": "token ",
        },
        {"name": "broken", "secretKeyRef": {"name": "x"}, "hosts": ["x.com"]},
    ]
}


def test_parse_applies_the_contract_defaults_and_drops_malformed_entries() -> None:
    creds = parse_credentials(SPEC)
    assert [c.name for c in creds] == ["openai", "anthropic", "gh"]
    assert (creds[0].header, creds[0].value_prefix) == ("Authorization", "Bearer ")
    assert (creds[1].header, creds[1].value_prefix) == ("x-api-key", "")
    assert creds[2].value_prefix == "token "
    assert parse_credentials({}) == ()


def test_select_by_host_name() -> None:
    creds = parse_credentials(SPEC)
    assert [c.name for c in select(creds, "api.openai.com")] == ["openai"]
    assert [c.name for c in select(creds, "api.github.com")] == ["gh"]
    assert select(creds, "github.com") == ()
    assert select(creds, "pypi.org") == ()


def test_render_strips_whitespace_and_adds_the_prefix() -> None:
    creds = parse_credentials(SPEC)
    assert render(select(creds, "api.openai.com"), {"openai": b"sk-123\n"}) == {
        "Authorization": "Bearer sk-123"
    }
    assert render(select(creds, "api.anthropic.com"), {"anthropic": b"ak"}) == {"x-api-key": "ak"}


def test_render_refuses_header_injection_missing_values_and_bad_names() -> None:
    cred = Credential("c", "s", "k", ("a.com",))
    with pytest.raises(CredentialError):
        render([cred], {"c": b"a\r\nX-Evil: 1"})
    with pytest.raises(CredentialError):
        render([cred], {})
    with pytest.raises(CredentialError):
        render([Credential("c", "s", "k", ("a.com",), header="Bad Header")], {"c": b"v"})
    with pytest.raises(CredentialError):
        render([cred], {"c": b"\xff"})


def test_the_first_credential_wins_a_header() -> None:
    a = Credential("a", "s", "k", ("h.com",))
    b = Credential("b", "s", "k", ("h.com",), header="authorization")
    assert render([a, b], {"a": b"1", "b": b"2"}) == {"Authorization": "Bearer 1"}


def test_apply_replaces_every_copy_the_agent_sent() -> None:
    headers = [
        ("Host", "api.openai.com"),
        ("authorization", "Bearer stockade-credential-placeholder:openai"),
        ("AUTHORIZATION", "x"),
        ("Accept", "*/*"),
    ]
    assert apply_headers(headers, {"Authorization": "Bearer sk"}) == [
        ("Host", "api.openai.com"),
        ("Accept", "*/*"),
        ("Authorization", "Bearer sk"),
    ]
