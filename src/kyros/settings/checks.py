"""Checks of setting values that need no schema library, shared by the full settings model
(:mod:`kyros.settings.model`) and the light reads clients make (:class:`kyros.settings.Loaded`).
"""

from __future__ import annotations

import re

from kyros.redaction import looks_like_secret

ROLES = ("plan", "implement", "critic", "summarize")

DEFAULT_DETACH_KEY = "ctrl-\\"
DEFAULT_RECONNECT_SECONDS = 30.0
MAX_RECONNECT_SECONDS = 3600.0

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Variable names that carry credentials (or change what runs); ``terminal_env`` refuses them.
#: PAT only as a whole word (GITHUB_PAT, PAT_X), not inside PATH.
_SECRET_ENV = re.compile(
    r"^KYROS_|KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|COOKIE|(?:^|_)PAT(?:_|$)"
    r"|(?:^|_)AUTH|^AWS_|^SSH_AUTH|^LD_|^PYTHON",
    re.IGNORECASE,
)


def check_terminal_env(names: list[str]) -> list[str]:
    """``terminal_env`` names: variable names that do not look like credentials."""
    for name in names:
        if looks_like_secret(name):
            raise ValueError(
                "an entry looks like a key, not a name: terminal_env wants names of variables "
                "of the daemon's environment (their values are never taken from here)"
            )
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if _SECRET_ENV.search(name):
            raise ValueError(
                f"{name} looks like a credential: terminals never inherit keys or tokens"
            )
    return names


def detach_key_byte(value: str) -> bytes:
    """The byte a detach key sends: ``ctrl-\\``, ``ctrl-b``, ``^]`` … or one character.

    Raises ``ValueError`` for anything else.
    """
    text = value.strip().lower()
    if text.startswith(("ctrl-", "c-", "^")):
        char = text.split("-", 1)[-1] if "-" in text else text[1:]
        if len(char) == 1 and 0x40 <= ord(char.upper()) <= 0x5F:
            return bytes([ord(char.upper()) & 0x1F])
    if len(value) == 1:
        return value.encode()
    raise ValueError(f"{value!r} is not a key: use ctrl-X (for example ctrl-\\ or ctrl-b)")
