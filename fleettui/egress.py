"""Where a webhook may be sent, and how a webhook URL is shown where anyone may read it.

Whoever holds an admin key or edits the config chooses a webhook's URL, and
the poller sits inside a network: without a rule, a webhook is a way in (the
cloud's metadata service hands out credentials; ``last_error`` would tell a
viewer which internal ports answer). The rule, applied to a URL when it is
configured (config file, ``POST``/``PATCH /v1/webhooks``) and again to every
address actually connected to when a delivery goes out (a name may resolve
elsewhere by then: DNS rebinding):

- **always refused**: link-local addresses (169.254.0.0/16, fe80::/10) and
  the cloud metadata services (169.254.169.254, fd00:ec2::254, fd20:ce::254,
  100.100.100.200, 168.63.129.16, and names such as
  ``metadata.google.internal`` or ``metadata``), also when written as an
  IPv6 form that carries an IPv4 address (``::ffff:169.254.169.254``,
  NAT64 ``64:ff9b::…``, 6to4 ``2002:…``);
- **refused unless** ``[security] allow_private_webhook_targets = true``:
  every address that is not public: private (10/8, 172.16/12, 192.168/16,
  fc00::/7, fec0::/10), loopback (127/8, ::1, and ``localhost``), shared
  100.64/10, reserved, multicast, unspecified, documentation ranges;
- IPv4 written the odd ways the system's resolver accepts (``0x7f000001``,
  ``2130706433``, ``127.1``, ``0177.0.0.1``) is read the way the resolver
  reads it (``getaddrinfo`` with ``AI_NUMERICHOST``, which never asks DNS),
  then checked: ``0x7f000001`` is 127.0.0.1, a loopback address.

Nothing here is a secret, but a URL may hold one (``?token=…``, a path such
as ``/hooks/T0/B0/XXXX``): :func:`redacted_url` is what logs and events show.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: the config key that lets webhooks reach private, loopback and other non-public addresses
ALLOW_KEY = "allow_private_webhook_targets"
ALLOW_HINT = (f"set {ALLOW_KEY} = true in the config's [security] table to allow private, "
              "loopback and other non-public targets")

#: addresses of cloud metadata services (instance credentials live there): always refused
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean...
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd20:ce::254",  # GCP metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure platform (wireserver)
))
#: names of cloud metadata services (compared lowercased, without a trailing dot)
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
    "instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com",
})

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Refusal:
    """Why a target is refused: ``what`` it is, and whether the config may allow it."""

    what: str
    allowable: bool

    def message(self, host: str) -> str:
        """One line for a config error, an API error or a delivery's error."""
        shown = host if len(host) <= 80 else host[:77] + "..."
        if self.allowable:
            return f"refused target: {shown} is {self.what}; {ALLOW_HINT}"
        return f"refused target: {shown} is {self.what} (always refused)"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress, allow_private: bool) -> Refusal | None:
    """Why a webhook may not connect to ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_refusal(ip.ipv4_mapped, allow_private)  # an IPv4 connection
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None:
        why = address_refusal(inner, allow_private)
        if why is not None:
            return why
    if ip in METADATA_ADDRESSES:
        return Refusal("a cloud metadata address", allowable=False)
    if ip.is_link_local:
        return Refusal("a link-local address", allowable=False)
    if allow_private:
        return None
    if ip.is_loopback:
        return Refusal("a loopback address", allowable=True)
    if ip.is_unspecified:
        return Refusal("the unspecified address", allowable=True)
    if ip.is_multicast:
        return Refusal("a multicast address", allowable=True)
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return Refusal("a shared (carrier-grade NAT) address", allowable=True)
    if ip.is_private or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return Refusal("a private address", allowable=True)
    if ip.is_reserved or not ip.is_global:
        return Refusal("not a public address", allowable=True)
    return None


def numeric_address(host: str) -> IPAddress | None:
    """``host`` read as the system's resolver reads a numeric address (never asking DNS):
    ``0x7f000001``, ``2130706433``, ``127.1`` and ``0177.0.0.1`` are all 127.0.0.1.
    None when it is a name."""
    text = host.removesuffix(".") if not host.endswith("..") else host
    if not text or text.startswith("[") or any(c.isspace() for c in text):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(text, None, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(found[0][4][0]).split("%", 1)[0])


def host_refusal(host: str, allow_private: bool) -> Refusal | None:
    """Why a webhook may not be sent to ``host`` as written in its URL (None: not known
    yet for a name, which is checked again on every connection, once resolved)."""
    name = host.lower().removesuffix(".")
    if name in METADATA_NAMES:
        return Refusal("a cloud metadata service", allowable=False)
    ip = numeric_address(name.split("%", 1)[0])
    if ip is not None:
        why = address_refusal(ip, allow_private)
        if why is not None and str(ip) != name.split("%", 1)[0]:
            return Refusal(f"{why.what} (it reads as {ip})", why.allowable)
        return why
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        return Refusal("a loopback name", allowable=True)
    return None


def url_refusal(url: str, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to ``url`` (a message naming its host, never its
    path or query), or None. A URL that does not parse is the caller's business."""
    import httpx  # the parser that sends the requests, so both read the host alike

    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    if not host:
        return None
    why = host_refusal(host, allow_private)
    return why.message(host) if why is not None else None


def redacted_url(url: str) -> str:
    """``url`` as a log line or an event may show it: scheme, host and port only
    (``https://hooks.example.com/…``); the path and query may hold a token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(a URL that does not parse)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    rest = url.split(parts.netloc, 1)[-1] if parts.netloc else ""
    return origin + ("/…" if rest not in ("", "/") else rest)
