"""Where Arbiter may send HTTP on someone's say-so: webhooks (an application's callback URL) and model
deployments (a policy admin's `base_url`). One copy of the address rules for both.

A URL is parsed, its host resolved, and every resolved address checked; the caller then connects to
an address that was checked (a second resolution could answer something else: DNS rebinding).
Cloud metadata (169.254.169.254, fd00:ec2::254, metadata.google.internal…) and every link-local,
multicast or unspecified address are always refused. Loopback and private ranges are refused unless
the caller's setting allows them.

IPv6 has several ways to carry an IPv4 address inside it (IPv4-mapped `::ffff:a.b.c.d`, the deprecated
IPv4-compatible `::a.b.c.d`, the SIIT IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765), NAT64
`64:ff9b::/96` and the local-use `64:ff9b:1::/48`, 6to4 `2002::/16`,
Teredo `2001::/32`); a host that routes them reaches the IPv4 address, so an address is judged by the
strictest of itself and every IPv4 address it embeds.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_REFUSED = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. 169.254.169.254 (cloud metadata)
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("255.255.255.255/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
# Names of metadata services that resolve only inside their cloud: refused before any resolution.
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use, never global
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT); Python calls none of it private


class Reach(IntEnum):
    """How far an address is from the public internet; a larger value is stricter."""

    PUBLIC = 0
    PRIVATE = 1
    LOOPBACK = 2
    REFUSED = 3


class UnsafeAddress(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]  # every resolved address, each checked


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address can carry (possibly more than one reading of it)."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client): either may be the one reached
    packed = address.packed
    if address in IPV4_COMPATIBLE and address not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
        found.append(ipaddress.IPv4Address(packed[12:]))
    if address in NAT64_WELL_KNOWN or address in IPV4_TRANSLATED:
        found.append(ipaddress.IPv4Address(packed[12:]))
    if address in NAT64_LOCAL:
        # The prefix may be used at any RFC 6052 length; read both the /96 and the /48 position.
        # (A reading of all zeros is the other length's padding, not an address.)
        found.extend(
            ipaddress.IPv4Address(raw) for raw in (packed[12:], packed[6:8] + packed[9:11]) if any(raw)
        )
    return found


def _own_reach(address: IPAddress) -> Reach:
    if any(address in network for network in ALWAYS_REFUSED if network.version == address.version):
        return Reach.REFUSED
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return Reach.REFUSED
    if address.is_loopback:
        return Reach.LOOPBACK
    if isinstance(address, ipaddress.IPv6Address) and address in NAT64_LOCAL:
        return Reach.PRIVATE
    if not address.is_global:
        return Reach.PRIVATE
    return Reach.PUBLIC


def address_reach(address: IPAddress) -> Reach:
    """The strictest reach of the address and of every IPv4 address embedded in it."""
    reach = _own_reach(address)
    if isinstance(address, ipaddress.IPv6Address):
        for inner in embedded_ipv4(address):
            reach = max(reach, _own_reach(inner))
        if address.ipv4_mapped is not None:
            # A mapped address is the IPv4 address itself, whatever the IPv6 range says.
            reach = _own_reach(address.ipv4_mapped)
    return reach


def address_refusal(
    address: IPAddress, *, allow_loopback: bool, allow_private: bool, loopback_setting: str, private_setting: str
) -> str | None:
    reach = address_reach(address)
    if reach is Reach.REFUSED:
        return f"{address} is a link-local, metadata, multicast or unspecified address (never allowed)"
    if reach is Reach.LOOPBACK and not allow_loopback:
        return f"{address} is a loopback address (set {loopback_setting} to allow)"
    if reach is Reach.PRIVATE and not allow_private:
        return f"{address} is a private or reserved address (set {private_setting} to allow)"
    return None


def url_target(
    url: str,
    *,
    what: str,
    allow_loopback: bool,
    allow_private: bool,
    loopback_setting: str,
    private_setting: str,
) -> Target:
    """Parse, resolve and check a URL; raises UnsafeAddress naming `what` was wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeAddress(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeAddress(f"the {what} must be http:// or https://")
    if not parts.hostname:
        raise UnsafeAddress(f"the {what} has no host")
    if parts.username or parts.password:
        raise UnsafeAddress(f"the {what} must not carry credentials")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise UnsafeAddress(f"{host} is a cloud metadata service (never allowed)")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeAddress(f"the host {parts.hostname!r} does not resolve ({error})") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeAddress(f"the host {parts.hostname!r} does not resolve")
    for text in addresses:
        refusal = address_refusal(
            ipaddress.ip_address(text.split("%", 1)[0]),
            allow_loopback=allow_loopback,
            allow_private=allow_private,
            loopback_setting=loopback_setting,
            private_setting=private_setting,
        )
        if refusal:
            raise UnsafeAddress(f"{parts.hostname} resolves to {refusal}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, addresses)
