"""Who is asking: the client address, honouring ``X-Forwarded-For`` only from trusted proxies.

The peer address of the TCP connection is the client unless that peer is one of
``SWIRL_TRUSTED_PROXIES``. Then ``X-Forwarded-For`` is read right to left (each proxy
appends the address it received the request from) and the first address that is not a
trusted proxy is the client. Entries left of it were written by the client itself and
are never believed; an entry that is not an IP address stops the walk at the proxy that
wrote it.

Rate limits key IPv6 clients by their /64 prefix: one host normally owns a whole /64,
so keying by the full address would give it 2⁶⁴ separate budgets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_CLIENT_PREFIX = 64


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` → networks; a ValueError names the bad entry."""
    networks = []
    for item in spec.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def _parse(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" (RFC 7239 style, seen in the wild)
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientResolver:
    """Maps (peer address, X-Forwarded-For values) to the client address and its rate-limit key."""

    def __init__(self, trusted: Sequence[IPNetwork] = ()) -> None:
        self.trusted = tuple(trusted)

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def client(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address as text (the peer's text when it is not an IP address, e.g. a unix socket)."""
        if peer is None:
            return "unknown"
        address = _parse(peer)
        if address is None or not self.trusted or not self.is_trusted(address):
            return str(address) if address is not None else peer
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            hop_address = _parse(hop)
            if hop_address is None:
                break  # garbage written by the client or a broken proxy: believe the last trusted hop
            address = hop_address
            if not self.is_trusted(address):
                break
        return str(address)


def rate_key(client: str) -> str:
    """The bucket a client draws from: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return client
