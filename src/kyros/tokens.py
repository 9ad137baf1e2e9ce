"""The daemon's bearer token: generated, stored hashed for the daemon, kept 0600 for the client.

The daemon keeps only the SHA-256 of the token (``daemon-token.sha256``) and compares digests
with :func:`hmac.compare_digest`. The local user's own client keeps the token itself in
``credentials.json`` (0600), the way ssh keeps a private key, so `kyros daemon token` can print it
for use on another machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from kyros.paths import Paths, write_private_file

TOKEN_PREFIX = "kyt_"


def generate() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def read_local_token(paths: Paths) -> str | None:
    """The token in this user's credentials file, if any."""
    try:
        data = json.loads(paths.credentials_file.read_text())
    except (OSError, ValueError):
        return None
    token = data.get("daemon_token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


def install(paths: Paths, token: str) -> None:
    """Make ``token`` the daemon's token: hash for the daemon, token for the local client."""
    write_private_file(paths.token_hash_file, digest(token) + "\n")
    write_private_file(paths.credentials_file, json.dumps({"daemon_token": token}) + "\n")


def ensure(paths: Paths) -> str | None:
    """Create a token if the daemon has none; returns the new token, or None if one existed."""
    if paths.token_hash_file.exists():
        return None
    token = generate()
    install(paths, token)
    return token


class TokenVerifier:
    """Checks presented tokens against the stored hash, re-reading it when it changes on disk."""

    def __init__(self, hash_file: Path) -> None:
        self.hash_file = hash_file
        self._stamp: tuple[int, int, int] | None = None
        self._digest: str | None = None

    def _current(self) -> str | None:
        try:
            st = self.hash_file.stat()
        except OSError:
            return None
        # Rotation replaces the file (new inode), so two rotations within one mtime tick are
        # still told apart.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._digest = self.hash_file.read_text().strip() or None
            self._stamp = stamp
        return self._digest

    def verify(self, presented: str) -> bool:
        expected = self._current()
        if not expected or not presented:
            return False
        return hmac.compare_digest(digest(presented), expected)
