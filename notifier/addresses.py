"""SSRF protection: which addresses a callback may reach, checked where it matters.

At submit the API resolves the callback's host and refuses it (422) if any address is
refused.  At delivery :class:`GuardedResolver` is the connector's resolver, so the
addresses aiohttp connects to are exactly the ones that passed the check (an IP
literal never reaches a resolver: :func:`literal_refusal` covers it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# cloud instance metadata services: refused even with private networks allowed
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


class RefusedAddressError(OSError):
    """The callback's host is, or resolves only to, addresses it may not reach."""


def address_refusal(address: str, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be reached ("10.0.0.1 is a private address"), or None."""
    kind = refused_kind(address, allow_private=allow_private)
    return None if kind is None else f"{address} is {kind}"


def refused_kind(address: str, *, allow_private: bool) -> str | None:
    """What kind of refused address ``address`` is ("a private address"), or None."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    kinds: tuple[tuple[str, bool], ...] = (
        ("a cloud metadata", ip in METADATA_ADDRESSES),
        ("a multicast", ip.is_multicast),
        ("the unspecified", ip.is_unspecified),
    )
    if not allow_private:
        kinds += (
            ("a loopback", ip.is_loopback),
            ("a link-local", ip.is_link_local),
            ("a private", ip.is_private),
            ("not a public", not ip.is_global),
        )
    for kind, flag in kinds:
        if flag:
            return f"{kind} address"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def literal_refusal(url: str, *, allow_private: bool) -> str | None:
    """The refusal of a URL whose host is an IP literal; None for a name or an allowed IP."""
    host = urlsplit(url).hostname or ""
    ip = _literal(host)
    return None if ip is None else address_refusal(str(ip), allow_private=allow_private)


async def url_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why a callback URL is refused now (scheme, unresolvable host, or a refused
    address among those it resolves to), or None.  Used at submit."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    host = parts.hostname
    if _literal(host) is not None:
        return literal_refusal(url, allow_private=allow_private)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or 443, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as exc:
        return f"its host {host!r} does not resolve ({exc})"
    for *_, sockaddr in infos:
        kind = refused_kind(str(sockaddr[0]), allow_private=allow_private)
        if kind is not None:
            return f"its host {host!r} resolves to {sockaddr[0]}, {kind}"
    return None


class GuardedResolver(AbstractResolver):
    """The system resolver, with refused addresses taken out of every answer; an answer
    left empty raises :class:`RefusedAddressError` (aiohttp wraps it in its DNS error)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = []
        refusals = []
        for answer in answers:
            refusal = address_refusal(answer["host"], allow_private=self._allow_private)
            if refusal is None:
                allowed.append(answer)
            else:
                refusals.append(refusal)
        if not allowed:
            raise RefusedAddressError(
                f"{host} resolves only to refused addresses: " + "; ".join(refusals)
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()
