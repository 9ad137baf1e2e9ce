"""Removing secrets from text before it is logged, stored or sent (RELIABILITY S11).

A secret is hidden in each form it commonly travels in: plain, URL-encoded and base64. Strings
shaped like provider keys or kyros tokens are hidden even when kyros does not know them.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
#: Key shapes of common providers and services, and kyros's own tokens: OpenAI and Anthropic
#: (sk-, sk-ant-, sk-proj-), GitHub (ghp_ gho_ ghu_ ghs_ ghr_, github_pat_), Slack (xox?-),
#: AWS access key ids (AKIA/ASIA + 16), Google (AIza), GitLab (glpat-), Hugging Face (hf_),
#: Groq (gsk_), xAI (xai-), kyros (kyt_).
KEY_SHAPES = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|kyt_[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|glpat-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,})"
)
#: Runs of characters a token is made of (base64 and URL-safe base64 included; not ``/`` or
#: ``.``, which split paths and host names into short parts).
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-+=]{24,}")
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


def _entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _random_looking(token: str) -> bool:
    # Letters and digits both, and close to random: 24+ characters at >= 4.0 bits each (a
    # random base62 token of 24 has ~4.3; model ids like claude-3-5-sonnet-20241022 ~3.6), or
    # 32+ at >= 3.5 (hex secrets and UUIDs, ~3.8). Run ids in logs are never judged this way.
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    bits = _entropy(token)
    return bits >= 4.0 or (len(token) >= 32 and bits >= 3.5)


def looks_like_secret(text: str) -> bool:
    """True if ``text`` holds something shaped like a key: a known prefix, or a long token of
    near-random characters."""
    if KEY_SHAPES.search(text):
        return True
    return any(_random_looking(m.group()) for m in _TOKEN_RUN.finditer(text))


def redact_shapes(text: str) -> str:
    """``text`` with key-shaped strings and random-looking tokens replaced by ``***``: for
    values shown to a user (settings), where a pasted key must not print whatever field it is
    in. Logs use :class:`Redactor`, which leaves ids and hashes alone."""
    text = KEY_SHAPES.sub(MASK, text)
    return _TOKEN_RUN.sub(lambda m: MASK if _random_looking(m.group()) else m.group(), text)
