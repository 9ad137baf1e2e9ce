"""Identifiers: short, URL-safe, sortable by creation time."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix`` + 9 chars of milliseconds + 7 random chars, e.g. ``r_01jd3kq8m4x7f2ba9c``."""
    return f"{prefix}_{_b32(time.time_ns() // 1_000_000, 9)}{_b32(secrets.randbits(35), 7)}"
