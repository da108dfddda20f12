"""Which addresses are this machine's own: for `--host`, the URLs the tools print and call, and the dev endpoints.

The stand-in's dev endpoints mint tokens and switch faults without authentication, so they answer only a client on
this machine (a loopback peer) that addressed the request to a loopback name (`Host: localhost`, `127.0.0.1` or
`[::1]`, with an optional port). The second check stops DNS rebinding: a web page whose own name resolves to
127.0.0.1 still sends its own name as the Host.
"""

import ipaddress
import re
import socket
from typing import Any

WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names of "every interface", to recognise them
_LOOPBACK_HOST_HEADER = re.compile(r"(?:localhost|127\.0\.0\.1|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
_LOOPBACK_ORIGIN = re.compile(r"https?://(?:localhost|127\.0\.0\.1|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x); never a wildcard."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; `::` also takes IPv4 where the system allows, so 127.0.0.1 reaches it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    return socket.create_server((host, port), family=family, dualstack_ipv6=dualstack, backlog=128)


def local_base(host: str, port: int) -> str:
    """The URL at which this machine reaches a server bound to host:port (a wildcard: through loopback)."""
    if host == "::" and not socket.has_dualstack_ipv6():
        return f"http://[::1]:{port}"
    if is_wildcard(host):
        return f"http://127.0.0.1:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def stand_in_base(host: str, port: int) -> str:
    """The stand-in's URL for the functions and the banner: always a loopback one (see needs_loopback_listener)."""
    return local_base("127.0.0.1" if needs_loopback_listener(host) else host, port)


def needs_loopback_listener(host: str) -> bool:
    """A specific non-loopback address: the functions (and the dev endpoints) need the stand-in on loopback too."""
    return not is_wildcard(host) and not is_loopback(host)


def dev_request_refusal(environ: dict[str, Any]) -> str | None:
    """Why a request may not use a dev endpoint, or None when it comes from this machine to a loopback name."""
    peer = environ.get("REMOTE_ADDR")  # set by every server; absent only when called in-process (tests)
    if peer is not None and not is_loopback(str(peer)):
        return (
            "The stand-in's dev endpoints (/v1/dev/*) answer only clients on the machine running it: "
            "open http://localhost:<port> or http://127.0.0.1:<port> there."
        )
    if not _LOOPBACK_HOST_HEADER.fullmatch(str(environ.get("HTTP_HOST") or "")):
        return (
            "The stand-in's dev endpoints (/v1/dev/*) answer only requests addressed to localhost, 127.0.0.1 or "
            "[::1] (the Host header); use http://localhost:<port> or http://127.0.0.1:<port>."
        )
    # A page from any other site open in the developer's browser could otherwise POST here (a "simple" cross-origin
    # request needs no preflight) and rotate keys or change faults: browsers name the page's origin.
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not _LOOPBACK_ORIGIN.fullmatch(str(origin)):
        return (
            "The stand-in's dev endpoints (/v1/dev/*) answer only pages served from this machine (the Origin header)."
        )
    return None
