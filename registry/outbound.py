"""Where Shelf may send requests of its own: the outbound policy for webhook URLs and serving
URLs.

A registered URL is a request the server will make later on someone's behalf, so a caller who
may register one could otherwise aim the server at what only it can reach: above all the cloud
metadata service on link-local addresses, which hands out credentials. The policy is two lists
of hosts: ``deny`` (checked first, always wins) and ``allow`` (when not empty, a host must match
it). An entry is a network in CIDR notation (``10.0.0.0/8``, ``fe80::/10``), a single address,
a host name (``hooks.example.com``) or a domain suffix (``.internal`` matches every host under
it). Names are compared case-insensitively without a trailing dot.

It is checked twice: when a URL is accepted (its host as written; an IP literal against the
networks) and again when a connection is made (``allowed_address``, on every address the name
resolves to), because a name may resolve to a denied address or change what it resolves to.
Loopback stays allowed by default: the embedded default and the quickstart serve models on
127.0.0.1. Deployments where loopback means something else (a sidecar, the node's own agents)
add ``127.0.0.0/8`` and ``::1`` to ``outbound_deny``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from registry.errors import InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DENY = (
    "169.254.0.0/16",  # IPv4 link-local, including the metadata service at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # the AWS metadata service over IPv6
    "metadata.google.internal",
    "metadata.goog",
)


class OutboundDenied(InvalidInput):
    """A URL or address the outbound policy does not allow."""


@dataclass(frozen=True)
class _Entries:
    networks: tuple[IPNetwork, ...]
    names: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> _Entries:
        networks: list[IPNetwork] = []
        names: set[str] = set()
        suffixes: list[str] = []
        for entry in entries:
            text = entry.strip().lower().rstrip(".")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if text.startswith("."):
                suffixes.append(text)
            else:
                names.add(text)
        return cls(tuple(networks), frozenset(names), tuple(suffixes))

    def has_address(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def has_name(self, name: str) -> bool:
        return name in self.names or any(name.endswith(suffix) for suffix in self.suffixes)

    @property
    def empty(self) -> bool:
        return not (self.networks or self.names or self.suffixes)


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def checked_url_host(url: str, what: str) -> str:
    """The host of ``url`` if it is a well-formed absolute http(s) URL: no whitespace or control
    characters anywhere (a CR/LF would split the request line it is written into), a host, a
    valid port."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidInput(f"{what} {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{what} {url!r} is not a valid URL: {exc}") from None
    del port
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{what} {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput(f"{what} {url!r} has no host")
    return parts.hostname


class OutboundPolicy:
    """Which hosts Shelf may call; see the module docstring for the rules."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = DEFAULT_DENY) -> None:
        self._allow = _Entries.parse(allow)
        self._deny = _Entries.parse(deny)

    def allowed_host(self, host: str) -> bool:
        """Whether ``host`` as written in a URL (a name or an IP literal) may be called."""
        name = host.strip("[]").lower().rstrip(".")
        address = _address(name)
        if address is not None:
            return not self._deny.has_address(address) and (
                self._allow.empty or self._allow.has_address(address)
            )
        if self._deny.has_name(name):
            return False
        return self._allow.empty or self._allow.has_name(name)

    def allowed_address(self, address: IPAddress | str) -> bool:
        """Whether an address a checked name resolved to may be connected to: never a denied
        one; an allow list of names was already applied to the name."""
        if isinstance(address, str):
            parsed = _address(address)
            if parsed is None:
                return False
            address = parsed
        if self._deny.has_address(address):
            return False
        allow = self._allow
        return allow.empty or allow.has_address(address) or bool(allow.names or allow.suffixes)

    def check_url(self, url: str, what: str) -> str:
        """``url`` if it is a well-formed http(s) URL the policy allows; else InvalidInput
        (OutboundDenied for a host the policy refuses) naming ``what`` (e.g. "webhook URL")."""
        host = checked_url_host(url, what)
        if not self.allowed_host(host):
            raise OutboundDenied(
                f"{what} {url!r} points at {host!r}, which the outbound policy does not allow "
                "(see SHELF_OUTBOUND_ALLOW and SHELF_OUTBOUND_DENY)",
                host=host,
            )
        return url
