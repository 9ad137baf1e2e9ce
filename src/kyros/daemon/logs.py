"""Daemon logging with secrets redacted at the formatter (RELIABILITY S11).

Redacting where records become text catches every path a secret can take into a log line:
messages, arguments, exception text and tracebacks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from kyros.redaction import Redactor


class RedactingFormatter(logging.Formatter):
    """Formats records, then hides every known secret and key-shaped string."""

    def __init__(self, secrets: Iterable[str], fmt: str) -> None:
        super().__init__(fmt)
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


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
