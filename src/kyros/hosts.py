"""Host names as the daemon compares them: one exact parse of a ``Host`` header (RELIABILITY S4).

A loose parse is how DNS rebinding gets past a Host check: ``[::1].evil`` read as ``::1``,
``localhost:evil`` as ``localhost``. Here a Host is ``name[:port]`` or ``[IPv6][:port]`` and
nothing else — a port is 1-5 digits up to 65535, a name is dot-separated labels of letters,
digits, ``-`` and ``_`` with at most one trailing dot (``localhost.`` is ``localhost``), an IPv6
address only inside brackets — and comes out in one canonical form (lower case, IP addresses as
:mod:`ipaddress` writes them), the same form :func:`canonical_name` gives the names a daemon is
configured to answer to.
"""

from __future__ import annotations

import functools
import ipaddress
import re

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?\Z")
_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([^:\[\]\s]+))(?::([0-9]{1,5}))?\Z")
_MAX_NAME = 253


class MalformedHost(ValueError):
    """Not a host name, an IP address or ``[IPv6]``, with an optional port."""


def canonical_name(name: str) -> str:
    """``name`` (a host name or an IP address, no port) in canonical form; ``MalformedHost``
    for anything else. IPv6 addresses may come with or without brackets."""
    text = name.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            raise MalformedHost(f"{name!r} is not an IPv6 address") from None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) > _MAX_NAME or not _NAME.match(text):
        raise MalformedHost(f"{name!r} is not a host name or an IP address")
    return text.removesuffix(".")


@functools.lru_cache(maxsize=256)  # a daemon sees a handful of Host values, each request one
def parse_host(value: str) -> tuple[str, int | None]:
    """The canonical name and the port of a ``Host`` header value; ``MalformedHost`` if it is
    anything but ``name[:port]`` or ``[IPv6][:port]``."""
    match = _HOST.match(value.lower())
    if match is None:
        raise MalformedHost(f"malformed Host {value!r}")
    v6, name, port_text = match.groups()
    port = int(port_text) if port_text is not None else None
    if port is not None and not 0 < port < 65536:
        raise MalformedHost(f"port {port} out of range in Host {value!r}")
    if v6 is not None:
        try:
            return str(ipaddress.IPv6Address(v6)), port
        except ValueError:
            raise MalformedHost(f"{v6!r} in Host {value!r} is not an IPv6 address") from None
    return canonical_name(name), port
