"""Which addresses a webhook may reach: the rule itself, without any network.

Every case is a host as written in a URL; none is connected to (the
delivery-time check, over real loopback connections, is in test_webhooks_ssrf).
"""

from __future__ import annotations

import ipaddress

import pytest

from fleettui.egress import (
    ALLOW_KEY,
    address_refusal,
    host_refusal,
    numeric_address,
    redacted_url,
    url_refusal,
)

ALWAYS = [
    "169.254.169.254", "169.254.1.2", "fe80::1", "fe80::1%eth0", "FE80::abcd",
    "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1",
    "fd00:ec2::254", "fd20:ce::254", "100.100.100.200", "168.63.129.16",
    "metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data",
    "0xa9fea9fe", "2852039166", "0251.0376.0251.0376",  # 169.254.169.254 spelt oddly
]
PRIVATE = [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::",
    "100.64.0.1", "224.0.0.1", "ff02::1", "fc00::1", "fd12:3456::1", "fec0::1", "192.0.2.7",
    "240.0.0.1", "255.255.255.255", "::ffff:10.0.0.1", "::ffff:127.0.0.1",
    "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0x7f.1", "017700000001", "10.1",
    "localhost", "api.localhost", "LOCALHOST.",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "0x08080808", "134744072",
          "payroll.example.com", "hooks.slack.com"]


@pytest.mark.parametrize("host", ALWAYS)
def test_link_local_and_metadata_are_refused_even_when_private_targets_are_allowed(
    host: str,
) -> None:
    for allow in (False, True):
        why = host_refusal(host, allow)
        assert why is not None and not why.allowable, host
        assert "always refused" in why.message(host)


@pytest.mark.parametrize("host", PRIVATE)
def test_non_public_targets_are_refused_unless_allowed(host: str) -> None:
    why = host_refusal(host, False)
    assert why is not None and why.allowable, host
    assert ALLOW_KEY in why.message(host) and "[security]" in why.message(host)
    assert host_refusal(host, True) is None


@pytest.mark.parametrize("host", PUBLIC)
def test_public_targets_and_names_pass(host: str) -> None:
    assert host_refusal(host, False) is None


@pytest.mark.parametrize(("written", "read"), [
    ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"), ("10.1", "10.0.0.1"), ("0x0a.0.0.1", "10.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"), ("::ffff:7f00:1", "::ffff:7f00:1"),
])
def test_odd_ipv4_spellings_are_read_as_the_resolver_reads_them(written: str, read: str) -> None:
    assert numeric_address(written) == ipaddress.ip_address(read)
    assert numeric_address("example.com") is None
    assert numeric_address("127.0.0.1 x") is None


def test_a_refusal_says_what_an_odd_spelling_reads_as() -> None:
    why = host_refusal("0x7f000001", False)
    assert why is not None and "127.0.0.1" in why.message("0x7f000001")


def test_ipv4_inside_ipv6_is_checked_as_the_ipv4_it_carries() -> None:
    assert address_refusal(ipaddress.ip_address("::ffff:8.8.8.8"), False) is None
    mapped = address_refusal(ipaddress.ip_address("::ffff:169.254.169.254"), True)
    assert mapped is not None and not mapped.allowable


def test_url_refusal_names_the_host_never_the_path_or_query() -> None:
    message = url_refusal("http://10.0.0.1:8080/hooks/SECRETPATH?token=SECRET", False)
    assert message is not None and "10.0.0.1" in message
    assert "SECRET" not in message
    assert url_refusal("http://[::ffff:169.254.169.254]/", True) is not None
    assert url_refusal("https://payroll.example.com/hook?token=x", False) is None


@pytest.mark.parametrize(("url", "shown"), [
    ("https://h.example.com/hooks/T0/B0/XXXX?token=s", "https://h.example.com/…"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:9/a?b", "http://[::1]:9/…"),
    ("http://user:pass@h.example.com/x", "http://h.example.com/…"),
])
def test_redacted_url_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
