"""Daemon logging with secrets redacted at the formatter (RELIABILITY S11).

Redacting where records become text catches every path a secret can take into a log line:
messages, arguments, exception text and tracebacks.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterable
from urllib.parse import quote


class RedactingFormatter(logging.Formatter):
    """Replaces each known secret (plain, URL-encoded, base64) with ``***``."""

    def __init__(self, secrets: Iterable[str], fmt: str) -> None:
        super().__init__(fmt)
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < 8:
                continue  # too short to redact without mangling ordinary text
            forms |= {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
        self._forms = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for form in self._forms:
            text = text.replace(form, "***")
        return text


def configure(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "uvicorn.access",
        "alembic",
        "LiteLLM",
        "LiteLLM Router",
        "LiteLLM Proxy",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
