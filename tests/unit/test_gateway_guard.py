from __future__ import annotations

import ipaddress

import pytest

from stockade.gateway.guard import AddressGuard, builtin_refusal, embedded_ipv4, parse_networks


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.10.10", "link-local"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "private"),
        ("192.0.2.1", "private"),
        ("240.0.0.1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert builtin_refusal(ip(address)) == reason
    assert AddressGuard().refusal(ip(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "100.128.0.1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert AddressGuard().refusal(ip(address)) is None


def test_cluster_cidrs_are_refused_even_when_public() -> None:
    guard = AddressGuard(cluster_networks=parse_networks("34.118.224.0/20, 2600:1900::/64"))
    assert guard.refusal(ip("34.118.230.1")) == "cluster"
    assert guard.refusal(ip("::ffff:34.118.230.1")) == "cluster"
    assert guard.refusal(ip("2600:1900::5")) == "cluster"
    assert guard.refusal(ip("34.118.240.1")) is None


def test_the_allow_list_is_off_by_default_and_exact_when_set() -> None:
    assert AddressGuard().refusal(ip("127.0.0.1")) == "loopback"
    guard = AddressGuard(allowed_networks=parse_networks("127.0.0.1"))
    assert guard.refusal(ip("127.0.0.1")) is None
    assert guard.refusal(ip("127.0.0.2")) == "loopback"


def test_only_permitted_addresses_survive_a_mixed_answer() -> None:
    permitted, reasons = AddressGuard().permitted([ip("10.0.0.1"), ip("8.8.8.8")])
    assert permitted == [ip("8.8.8.8")]
    assert reasons == ["private"]
    assert AddressGuard().permitted([ip("10.0.0.1")])[0] == []


def test_embedded_ipv4() -> None:
    assert embedded_ipv4(ip("::ffff:1.2.3.4")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("64:ff9b::102:304")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2002:102:304::")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2606:4700::1")) is None
    assert embedded_ipv4(ip("1.2.3.4")) is None


def test_bad_networks_raise() -> None:
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
    assert parse_networks(" , ") == ()
