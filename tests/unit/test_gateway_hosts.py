from __future__ import annotations

import pytest

from stockade.gateway.hosts import (
    DEFAULT_PORTS,
    HostPattern,
    PatternError,
    allowed,
    name_matches,
    parse_pattern,
    parse_patterns,
)


def test_a_name_without_port_allows_443_and_80_only() -> None:
    pattern = parse_pattern("API.OpenAI.com")
    assert pattern == HostPattern("api.openai.com", False, DEFAULT_PORTS)
    assert pattern.matches("api.openai.com", 443)
    assert pattern.matches("api.openai.com", 80)
    assert not pattern.matches("api.openai.com", 8443)


def test_an_explicit_port_allows_that_port_only() -> None:
    pattern = parse_pattern("pypi.org:8443")
    assert pattern.ports == (8443,)
    assert pattern.matches("pypi.org", 8443)
    assert not pattern.matches("pypi.org", 443)


def test_a_wildcard_matches_names_below_never_the_apex_nor_lookalikes() -> None:
    patterns, _ = parse_patterns(["*.github.com"])
    assert allowed(patterns, "api.github.com", 443)
    assert allowed(patterns, "a.b.github.com", 443)
    assert not allowed(patterns, "github.com", 443)
    assert not allowed(patterns, "evilgithub.com", 443)
    assert not allowed(patterns, "github.com.evil.net", 443)


def test_names_compare_without_case_and_trailing_dot() -> None:
    patterns, _ = parse_patterns(["pypi.org"])
    assert allowed(patterns, "PyPI.org.", 443)


@pytest.mark.parametrize(
    "text",
    [
        "*",
        "*.com",
        "a.*.com",
        "*foo.com",
        "foo.*",
        "pypi.org:0",
        "pypi.org:70000",
        "pypi.org:x",
        "",
        "a..b",
        "-a.com",
        "10.0.0.1.",
        "10.0.0.1",
        "[::1]:443",
        "a_b.com",
    ],
)
def test_malformed_patterns_are_refused(text: str) -> None:
    with pytest.raises(PatternError):
        parse_pattern(text)


def test_unparsable_entries_are_set_aside_and_allow_nothing() -> None:
    patterns, rejected = parse_patterns(["ok.example.com", "a.*.com"])
    assert [p.name for p in patterns] == ["ok.example.com"]
    assert rejected == ("a.*.com",)
    assert not allowed(patterns, "a.x.com", 443)


def test_ip_literals_and_garbage_hosts_are_never_allowed() -> None:
    patterns, _ = parse_patterns(["example.com"])
    assert not allowed(patterns, "93.184.216.34", 443)
    assert not allowed(patterns, "*", 443)
    assert not allowed(patterns, "", 443)


def test_credential_host_names_ignore_ports() -> None:
    assert name_matches(["api.openai.com"], "api.openai.com")
    assert name_matches(["*.anthropic.com:443"], "api.anthropic.com")
    assert not name_matches(["api.openai.com"], "openai.com")
    assert not name_matches(["a.*.com"], "a.b.com")
