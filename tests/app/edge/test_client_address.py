"""The client address: X-Forwarded-For believed only from SWIRL_TRUSTED_PROXIES, and only up to the first untrusted hop."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.edge.client_address import ClientResolver, parse_networks, rate_key

PROXIES = ClientResolver(parse_networks("10.0.0.0/8, 192.168.1.1 ::1"))


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    resolver = ClientResolver()
    assert resolver.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"
    assert resolver.client(None) == "unknown"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert PROXIES.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"
    assert PROXIES.client("203.0.113.9", ["10.0.0.5"]) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client() -> None:
    assert PROXIES.client("10.1.2.3", ["198.51.100.1"]) == "198.51.100.1"
    assert PROXIES.client("::1", ["198.51.100.1"]) == "198.51.100.1"
    # a chain of trusted proxies: walk back to the first untrusted hop
    assert PROXIES.client("10.1.2.3", ["198.51.100.1, 192.168.1.1, 10.9.9.9"]) == "198.51.100.1"
    # several headers are one list, in order
    assert PROXIES.client("10.1.2.3", ["198.51.100.1", "10.9.9.9"]) == "198.51.100.1"


def test_entries_the_client_wrote_itself_are_never_believed() -> None:
    # the client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address
    assert PROXIES.client("10.1.2.3", ["1.1.1.1, 198.51.100.1"]) == "198.51.100.1"
    # ... even when the client pretends to be a trusted proxy itself
    assert PROXIES.client("10.1.2.3", ["1.1.1.1, 10.0.0.7, 198.51.100.1"]) == "198.51.100.1"


def test_garbage_stops_at_the_last_trusted_hop() -> None:
    assert PROXIES.client("10.1.2.3", ["not-an-ip"]) == "10.1.2.3"
    assert PROXIES.client("10.1.2.3", ["198.51.100.1, garbage, 10.0.0.9"]) == "10.0.0.9"
    assert PROXIES.client("10.1.2.3", [""]) == "10.1.2.3"


def test_ports_brackets_and_mapped_addresses() -> None:
    assert PROXIES.client("10.1.2.3", ["198.51.100.1:51000"]) == "198.51.100.1"
    assert PROXIES.client("10.1.2.3", ["[2001:db8::7]:443"]) == "2001:db8::7"
    assert PROXIES.client("::ffff:10.1.2.3", ["198.51.100.1"]) == "198.51.100.1"


def test_ipv6_clients_share_a_budget_per_64() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("198.51.100.1") == "198.51.100.1"


def test_bad_proxy_settings_stop_start_up() -> None:
    with pytest.raises(ValueError, match=r"proxy\.example"):
        parse_networks("10.0.0.1, proxy.example")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/33")
