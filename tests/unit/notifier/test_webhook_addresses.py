"""SSRF rules: which addresses a callback may reach, with and without private networks."""

from __future__ import annotations

import pytest

from notifier.addresses import address_refusal, literal_refusal, url_refusal


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "not a public"),
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_private_addresses_are_refused_unless_allowed(address: str, kind: str) -> None:
    refusal = address_refusal(address, allow_private=False)
    assert refusal is not None
    assert kind in refusal
    assert address_refusal(address, allow_private=True) is None


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "224.0.0.1", "0.0.0.0"]
)
def test_metadata_multicast_and_unspecified_are_refused_even_when_private_is_allowed(
    address: str,
) -> None:
    assert address_refusal(address, allow_private=True) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address, allow_private=False) is None


def test_ip_literal_urls_are_checked_without_a_resolver() -> None:
    assert literal_refusal("http://127.0.0.1:8080/hook", allow_private=False) is not None
    assert literal_refusal("http://[::1]/hook", allow_private=False) is not None
    assert literal_refusal("https://8.8.8.8/hook", allow_private=False) is None
    assert literal_refusal("https://hooks.example/x", allow_private=False) is None


async def test_a_name_that_resolves_to_loopback_is_refused_at_submit() -> None:
    refusal = await url_refusal("http://localhost:9/hook", allow_private=False)
    assert refusal is not None
    assert "loopback" in refusal
    assert await url_refusal("http://localhost:9/hook", allow_private=True) is None


async def test_other_schemes_and_unresolvable_hosts_are_refused() -> None:
    assert await url_refusal("ftp://8.8.8.8/x", allow_private=True) is not None
    refusal = await url_refusal("http://no-such-host.invalid/x", allow_private=True)
    assert refusal is not None
    assert "does not resolve" in refusal
