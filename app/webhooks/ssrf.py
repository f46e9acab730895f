"""SSRF guard for webhook delivery: resolve once, refuse internal addresses, connect to what was checked.

A webhook URL is chosen by a merchant, so without this guard Kassa would POST wherever it is told:
the cloud metadata service, a database on the private network, the admin port of Redis. So:

* the host is resolved at delivery time (never trusted from when the endpoint was created: DNS changes);
* every address it resolves to must be public; one internal address refuses the whole host, so that a
  name answering with both a public and a private address cannot be used to reach the private one;
* the request then goes to the address that was checked, with the name in the ``Host`` header and in
  TLS SNI and certificate checks, so no second lookup can rebind the name to another address
  ("DNS rebinding": a short TTL answering 203.0.113.7 to the check and 127.0.0.1 to the connect).

``allow_private`` (config ``WEBHOOKS_ALLOW_PRIVATE``) lets development and test receivers on localhost or
the LAN through. Cloud metadata addresses, multicast and "this host" (0.0.0.0, ::) stay refused even
then: nothing legitimate listens there for webhooks.
"""
import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, ECS task metadata, Alibaba Cloud).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200",
))

# getaddrinfo(host, port, family, type) -> [(family, type, proto, canonname, sockaddr)], like socket's.
Resolver = Callable[..., list]


class BlockedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not be sent to."""


class ResolutionFailed(Exception):
    """The host name does not resolve."""


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: the checked address, and what goes in the Host header and SNI."""

    scheme: str
    host: str          # the name as written in the URL (lower case, no brackets)
    port: int
    ip: IPAddress
    path: str          # path and query, at least "/"

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name (IPv6 in brackets)."""
        address = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.scheme}://{address}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _unmapped(ip: IPAddress) -> IPAddress:
    """::ffff:10.0.0.1 is 10.0.0.1 to the kernel: judge the IPv4 address inside."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def blocked_reason(ip: IPAddress, allow_private: bool) -> str | None:
    """Why webhooks may not go to this address, or None when they may."""
    ip = _unmapped(ip)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if allow_private:
        return None
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    # is_global is False for what remains non-public: shared (CGNAT 100.64/10), documentation ranges,
    # benchmarking, 6to4/Teredo relays and the like.
    if not ip.is_global:
        return "non-public address"
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The address when the host is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an http(s) URL; ValueError when it is not one we can send to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("URL must start with https:// (or http:// in test mode)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URL must not contain a user name or password")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("URL must have a host name")
    if not host.isascii() and literal_ip(host) is None:
        try:  # an internationalized name: its ASCII (punycode) form is what DNS and the Host header carry
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("URL has an invalid host name") from None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError("URL has an invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path


def check_host_literal(url: str, allow_private: bool) -> None:
    """Refuse, at creation time, URLs whose host is obviously internal (an IP literal or localhost).

    Names are resolved only at delivery: what they resolve to today says nothing about tomorrow.
    """
    _scheme, host, _port, _path = split_url(url)
    ip = literal_ip(host)
    if ip is not None:
        reason = blocked_reason(ip, allow_private)
    elif not allow_private and (host == "localhost" or host.endswith(".localhost")):
        reason = "loopback address"
    else:
        reason = None
    if reason:
        raise BlockedAddress(f"{host} is a {reason}; webhooks go to public addresses only")


def resolve_target(url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> Target:
    """Resolve the URL's host once and check every address; the Target connects to the first one.

    Raises BlockedAddress or ResolutionFailed.
    """
    scheme, host, port, path = split_url(url)
    ip = literal_ip(host)
    if ip is not None:
        addresses = [ip]
    else:
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise ResolutionFailed(f"could not resolve {host}: {exc}") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ResolutionFailed(f"{host} has no addresses")
    for address in addresses:
        reason = blocked_reason(address, allow_private)
        if reason:
            raise BlockedAddress(f"{host} resolves to {address}, a {reason}")
    return Target(scheme=scheme, host=host, port=port, ip=addresses[0], path=path)
