"""Removing secrets from text before it is logged, stored or sent (RELIABILITY S11).

A secret is hidden in each form it commonly travels in: plain, URL-encoded and base64. Strings
shaped like provider keys or kyros tokens are hidden even when kyros does not know them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
#: Key shapes of common providers and kyros's own tokens.
KEY_SHAPES = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|kyt_[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,})"
)
MIN_SECRET_LEN = 8


class Redactor:
    """Replaces known secrets (and key-shaped strings) in text with ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LEN:
                continue  # too short to redact without mangling ordinary text
            forms |= {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return KEY_SHAPES.sub(MASK, text)
