"""Provider API keys: where a key comes from, and where `kyros auth set-key` keeps one.

A provider's key is resolved in this order, the first that has one wins:

1. the environment variable of the provider (``OPENAI_API_KEY`` …, see :data:`PROVIDER_KEYS`);
2. the OS keyring (service ``kyros``, username = the provider name);
3. kyros's own file, ``$XDG_STATE_HOME/kyros/provider-keys.json`` (0600 in a 0700 directory).

The keyring is preferred for storing, but on headless Linux there often is none usable
(STACK-NOTES, "keyring on headless Linux"): the default backend fails, the null backend silently
discards writes, ``keyrings.alt`` keeps plaintext files, and a locked desktop keyring can hang
waiting for a prompt. So ``keyring`` is imported lazily, probed once in a daemon thread with a
timeout, and every later keyring call runs under the same timeout. When no keyring is usable —
or ``CI`` is set, or ``KYROS_KEYRING=off`` — the key goes to the file, with one warning saying so.

Nothing here ever prints, logs or returns key material except :meth:`Credentials.get` and
:meth:`Credentials.provider_keys`, which exist to hand keys to the model client.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kyros.errors import UsageError
from kyros.paths import Paths, UnsafeDirectory, ensure_private_dir, write_private_file

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

#: Provider prefix → the environment variable holding its key (litellm's own names).
PROVIDER_KEYS: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "xai": "XAI_API_KEY",
}
#: Providers that run locally and need no key.
KEYLESS = frozenset({"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "vllm"})

#: The keyring service every kyros key is stored under (username = provider).
KEYRING_SERVICE = "kyros"
#: Keyring entry listing providers outside :data:`PROVIDER_KEYS` that have a key in the keyring
#: (a keyring cannot be enumerated). Not a valid provider name, so it never collides with one.
KEYRING_INDEX = "_providers"
#: How long a keyring answer is reused: a key set while the daemon runs is seen this soon.
KEYRING_CACHE_SECONDS = 30.0
MAX_KEY_LENGTH = 4096
FILE_VERSION = 1
#: The file is small; anything larger is not ours and is not read into memory.
_MAX_FILE_BYTES = 1 << 20

_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]{1,31}")
_OFF = frozenset({"off", "0", "false", "no"})

T = TypeVar("T")


def validate_provider(provider: str) -> str:
    """Return ``provider`` if it is a known provider or a well-formed name; else UsageError."""
    if provider in PROVIDER_KEYS or _PROVIDER_NAME.fullmatch(provider):
        return provider
    known = ", ".join(PROVIDER_KEYS)
    raise UsageError(
        f"invalid provider name {provider!r}: use a known provider ({known}) or a name of "
        "2-32 lowercase letters, digits and underscores starting with a letter"
    )


def env_var_for(provider: str) -> str:
    """The environment variable that holds ``provider``'s key (``<UPPER>_API_KEY`` if unknown)."""
    validate_provider(provider)
    return PROVIDER_KEYS.get(provider) or f"{provider.upper()}_API_KEY"


def key_fingerprint(key: str, salt: str) -> str:
    """A keyed fingerprint of ``key``: equal for equal keys under one ``salt``, and telling
    nothing of the key (HMAC-SHA256, 64 bits). A daemon hands these out under a salt of its
    own so a client can tell whether both hold the same key without either sending one."""
    import hashlib
    import hmac

    return hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()[:16]


def validate_key(key: str) -> str:
    """Return the key without one trailing newline, or raise UsageError.

    The messages name what is wrong, never the key itself (they end up in terminals and logs).
    """
    if key.endswith("\r\n"):
        key = key[:-2]
    elif key.endswith("\n"):
        key = key[:-1]
    if not key:
        raise UsageError("the key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise UsageError(f"the key is longer than {MAX_KEY_LENGTH} characters")
    for ch in key:
        if ch == "\0":
            raise UsageError("the key contains a NUL character")
        if ch in "\r\n":
            raise UsageError("the key contains a line break (paste one key on one line)")
        if ch.isspace():
            raise UsageError("the key contains whitespace")
        if not ch.isprintable():
            raise UsageError("the key contains a control or invisible character")
    return key


@dataclass(frozen=True)
class StoreResult:
    """Where :meth:`Credentials.set` put a key.

    ``where`` is ``"keyring"`` or ``"file"``; ``path`` is the file when it is the file; ``warning``
    is one line to show the user once when the file had to be used.
    """

    where: str
    path: Path | None = None
    warning: str | None = None


@dataclass(frozen=True)
class KeyringStatus:
    """Whether the OS keyring is used, which backend it is, and if not, why (one phrase)."""

    usable: bool
    backend: str | None = None
    reason: str | None = None


class _KeyringFailed(Exception):
    """A keyring call timed out or failed; the message is a phrase for the user."""


def _backend_name(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unusable_reason(backend: KeyringBackend) -> str | None:
    """Why ``backend`` must not hold keys, or None if it may."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        return "no OS keyring backend is available"
    if isinstance(backend, null.Keyring):
        return "the keyring is the null backend, which discards what it is given"
    if type(backend).__module__.startswith("keyrings.alt"):
        # keyrings.alt installs itself as the default for every program in the environment and
        # keeps secrets in files that are plaintext or protected by a well-known password.
        return f"the keyring backend {_backend_name(backend)} stores keys in a plain file"
    if isinstance(backend, chainer.ChainerBackend):
        backends = list(backend.backends)
        if not backends:
            return "no OS keyring backend is available"
        # A chain writes to its first member and reads from all: every member must be safe.
        for member in backends:
            reason = _unusable_reason(member)
            if reason:
                return reason
    return None


def _call_with_timeout(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` in a daemon thread, waiting at most ``timeout`` seconds.

    A daemon thread, not an executor: a keyring stuck on an unlock prompt must not keep the
    process alive at exit (executor threads are joined at shutdown).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="kyros-keyring", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _KeyringFailed(f"the OS keyring did not answer within {timeout:g} s ({what})")
    if "error" in box:
        exc = box["error"]
        raise _KeyringFailed(f"the OS keyring failed ({what}): {type(exc).__name__}") from exc
    return cast(T, box["value"])


class Credentials:
    """Resolves, stores and removes provider API keys for one user.

    ``env`` is the environment to read ``*_API_KEY`` variables, ``CI`` and ``KYROS_KEYRING``
    from (pass ``os.environ`` for the process's own). The keyring is probed at most once per
    instance, on first use; keyring answers are cached for 30 s and the file is re-read only
    when it changes on disk, so :meth:`provider_keys` is cheap enough to call before every
    model call. Safe to use from several threads.
    """

    def __init__(
        self,
        paths: Paths,
        env: Mapping[str, str],
        *,
        keyring_timeout: float = 3.0,
        keyring_cache_seconds: float = KEYRING_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths
        self.env = env
        self.keyring_timeout = keyring_timeout
        self.keyring_cache_seconds = keyring_cache_seconds
        self._clock = clock
        self._lock = threading.RLock()
        self._status: KeyringStatus | None = None
        self._backend: KeyringBackend | None = None
        # provider (or KEYRING_INDEX) -> (expires at, value)
        self._kr_cache: dict[str, tuple[float, str | None]] = {}
        self._file_stamp: tuple[int, int, int] | None = None
        self._file_keys: dict[str, str] = {}

    # -- public API ----------------------------------------------------------------------------

    @property
    def file(self) -> Path:
        """kyros's own key file (it may not exist)."""
        return self.paths.provider_keys_file

    def keyring_status(self) -> KeyringStatus:
        """Probe the keyring (once per instance) and say whether it is used."""
        self._keyring()
        assert self._status is not None
        return self._status

    def get(self, provider: str) -> str | None:
        """The effective key of ``provider``: env var > OS keyring > file; None if none."""
        return self._resolve(validate_provider(provider))[0]

    def source(self, provider: str) -> str | None:
        """Where ``provider``'s effective key comes from — ``"env OPENAI_API_KEY"``,
        ``"keyring"`` or ``"file /path"`` — or None. Never the key."""
        return self._resolve(validate_provider(provider))[1]

    def set(self, provider: str, key: str) -> StoreResult:
        """Store ``key`` for ``provider``: in the OS keyring if usable, else in the file.

        When the file is used the result carries a one-line warning for the user. A key stored
        in the keyring is removed from the file, so no stale plaintext copy stays behind.
        """
        provider = validate_provider(provider)
        key = validate_key(key)
        # Read the file first: one others can read is refused before anything is written.
        in_file = provider in self._read_file()
        backend = self._keyring()
        if backend is not None:
            try:
                self._kr_call(lambda: backend.set_password(KEYRING_SERVICE, provider, key), "set")
                # Read it back: some backends accept a write and keep nothing.
                kept = self._kr_call(
                    lambda: backend.get_password(KEYRING_SERVICE, provider), "read back"
                )
                if kept != key:
                    raise _KeyringFailed("the OS keyring did not keep the key")
            except _KeyringFailed as exc:
                self._mark_unusable(str(exc))
            else:
                with self._lock:
                    self._kr_cache[provider] = (self._clock() + self.keyring_cache_seconds, key)
                if provider not in PROVIDER_KEYS:
                    self._index_update(add=provider)
                if in_file:
                    self._file_update(provider, None)
                return StoreResult(where="keyring")
        path = self._file_update(provider, key)
        status = self._status
        reason = status.reason if status and status.reason else "no OS keyring was found"
        warning = (
            f"no OS keyring was usable ({reason}); the {provider} key is stored in {path} "
            "(mode 0600, readable only by you)"
        )
        return StoreResult(where="file", path=path, warning=warning)

    def remove(self, provider: str) -> list[str]:
        """Remove ``provider``'s key from the keyring and the file.

        Returns where it was removed from (``"keyring"``, ``"file /path"``); an environment
        variable is not kyros's to remove and is left alone.
        """
        provider = validate_provider(provider)
        removed: list[str] = []
        backend = self._keyring()
        if backend is not None and self._kr_lookup(provider, fresh=True) is not None:
            from keyring.errors import PasswordDeleteError

            def delete() -> None:
                # Another process may have removed it since we looked: that is not an error.
                with contextlib.suppress(PasswordDeleteError):
                    backend.delete_password(KEYRING_SERVICE, provider)

            try:
                self._kr_call(delete, "delete")
            except _KeyringFailed as exc:
                raise UsageError(f"could not remove the {provider} key: {exc}") from exc
            with self._lock:
                self._kr_cache[provider] = (self._clock() + self.keyring_cache_seconds, None)
            removed.append("keyring")
        if provider not in PROVIDER_KEYS and backend is not None:
            self._index_update(remove=provider)
        if provider in self._read_file():
            self._file_update(provider, None)
            removed.append(f"file {self.file}")
        return removed

    def entries(self) -> list[dict[str, Any]]:
        """One row per provider kyros knows of or holds a key for: ``provider``, ``env_var``,
        ``source`` (or None) and ``stored_in`` (``["keyring", "file"]``, either, or neither).

        Never contains key material, not even a prefix.
        """
        file_keys = self._read_file()
        rows = []
        for provider in self._providers(file_keys):
            stored_in = []
            if self._kr_lookup(provider) is not None:
                stored_in.append("keyring")
            if provider in file_keys:
                stored_in.append("file")
            rows.append(
                {
                    "provider": provider,
                    "env_var": env_var_for(provider),
                    "source": self._resolve(provider, file_keys)[1],
                    "stored_in": stored_in,
                }
            )
        return rows

    def provider_keys(self) -> dict[str, str]:
        """``{ENV_VAR_NAME: key}`` for every provider with a key, by precedence.

        Also includes every non-empty ``*_API_KEY`` variable of the environment, as settings
        always did, so this is a drop-in source of keys (and of secrets to redact).
        """
        file_keys = self._read_file()
        out: dict[str, str] = {}
        for provider in self._providers(file_keys):
            key = self._resolve(provider, file_keys)[0]
            if key:
                out[env_var_for(provider)] = key
        for name, value in self.env.items():
            if name.endswith("_API_KEY") and value:
                out[name] = value
        return out

    # -- resolution ----------------------------------------------------------------------------

    def _providers(self, file_keys: Mapping[str, str]) -> list[str]:
        extra = (set(file_keys) | set(self._index())) - set(PROVIDER_KEYS)
        return [*PROVIDER_KEYS, *sorted(extra)]

    def _resolve(
        self, provider: str, file_keys: Mapping[str, str] | None = None
    ) -> tuple[str | None, str | None]:
        env_var = env_var_for(provider)
        value = self.env.get(env_var)
        if value:
            return value, f"env {env_var}"
        value = self._kr_lookup(provider)
        if value:
            return value, "keyring"
        value = (self._read_file() if file_keys is None else file_keys).get(provider)
        if value:
            return value, f"file {self.file}"
        return None, None

    # -- keyring -------------------------------------------------------------------------------

    def _disabled_reason(self) -> str | None:
        if self.env.get("KYROS_KEYRING", "").strip().lower() in _OFF:
            return "KYROS_KEYRING=off"
        if self.env.get("CI"):
            # CI runners have no desktop session; a probe could only fail or hang.
            return "CI is set"
        return None

    def _keyring(self) -> KeyringBackend | None:
        """The usable keyring backend, or None. Probes on first call only."""
        with self._lock:
            if self._status is None:
                self._status = self._probe()
            return self._backend if self._status.usable else None

    def _probe(self) -> KeyringStatus:
        disabled = self._disabled_reason()
        if disabled:
            return KeyringStatus(usable=False, reason=disabled)

        def probe() -> tuple[KeyringBackend, str | None]:
            # Importing keyring and choosing a backend can itself block (D-Bus activation).
            import keyring

            backend = keyring.get_keyring()
            reason = _unusable_reason(backend)
            if reason is None:
                # One real call: a locked keyring hangs on its unlock prompt or raises here.
                backend.get_password(KEYRING_SERVICE, KEYRING_INDEX)
            return backend, reason

        try:
            backend, reason = _call_with_timeout(probe, self.keyring_timeout, "probe")
        except _KeyringFailed as exc:
            return KeyringStatus(usable=False, reason=str(exc))
        name = _backend_name(backend)
        if reason:
            return KeyringStatus(usable=False, backend=name, reason=reason)
        self._backend = backend
        return KeyringStatus(usable=True, backend=name)

    def _mark_unusable(self, reason: str) -> None:
        # After one timeout or failure, stop asking for the life of this instance: a hung
        # keyring would otherwise cost the full timeout on every lookup.
        with self._lock:
            backend = self._status.backend if self._status else None
            self._status = KeyringStatus(usable=False, backend=backend, reason=reason)
            self._kr_cache.clear()

    def _kr_call(self, fn: Callable[[], T], what: str) -> T:
        return _call_with_timeout(fn, self.keyring_timeout, what)

    def _kr_lookup(self, name: str, *, fresh: bool = False) -> str | None:
        """The keyring's value for ``name`` (a provider or the index), cached for 30 s."""
        backend = self._keyring()
        if backend is None:
            return None
        now = self._clock()
        with self._lock:
            hit = self._kr_cache.get(name)
            if hit is not None and hit[0] > now and not fresh:
                return hit[1]
        try:
            value = self._kr_call(lambda: backend.get_password(KEYRING_SERVICE, name), "get")
        except _KeyringFailed as exc:
            self._mark_unusable(str(exc))
            return None
        value = value if isinstance(value, str) and value else None
        with self._lock:
            self._kr_cache[name] = (now + self.keyring_cache_seconds, value)
        return value

    def _index(self) -> list[str]:
        raw = self._kr_lookup(KEYRING_INDEX)
        if not raw:
            return []
        return [p for p in raw.split(",") if _PROVIDER_NAME.fullmatch(p)]

    def _index_update(self, *, add: str | None = None, remove: str | None = None) -> None:
        backend = self._keyring()
        if backend is None:
            return
        names = set(self._index()) if self._kr_lookup(KEYRING_INDEX, fresh=True) else set()
        new = (names | ({add} if add else set())) - ({remove} if remove else set())
        if new == names:
            return
        value = ",".join(sorted(new))
        try:
            if value:
                self._kr_call(
                    lambda: backend.set_password(KEYRING_SERVICE, KEYRING_INDEX, value), "set"
                )
            else:
                from keyring.errors import PasswordDeleteError

                def delete() -> None:
                    with contextlib.suppress(PasswordDeleteError):
                        backend.delete_password(KEYRING_SERVICE, KEYRING_INDEX)

                self._kr_call(delete, "delete")
        except _KeyringFailed:
            # The index only lets `list` show custom providers; the key itself is stored.
            return
        with self._lock:
            self._kr_cache[KEYRING_INDEX] = (
                self._clock() + self.keyring_cache_seconds,
                value or None,
            )

    # -- the file ------------------------------------------------------------------------------

    def _read_file(self) -> dict[str, str]:
        """The file's keys, re-read only when the file changed (inode, mtime or size)."""
        path = self.file
        try:
            st = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._file_stamp, self._file_keys = None, {}
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        with self._lock:
            if (st.st_ino, st.st_mtime_ns, st.st_size) == self._file_stamp:
                return dict(self._file_keys)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fh:
            # Check the file that was opened, not the name: it may have been replaced meanwhile.
            st = os.fstat(fh.fileno())
            _check_private(path, st)
            raw = fh.read(_MAX_FILE_BYTES + 1)
        keys = _parse(path, raw)
        with self._lock:
            self._file_stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            self._file_keys = keys
        return dict(keys)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise read-modify-write of the file between kyros processes."""
        try:
            ensure_private_dir(self.file.parent)
        except UnsafeDirectory as exc:
            raise UsageError(str(exc)) from exc
        lock_path = self.file.with_name(f".{self.file.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                yield
        finally:
            os.close(fd)

    def _file_update(self, provider: str, key: str | None) -> Path:
        """Set (or with ``key=None`` remove) one provider in the file; returns the file."""
        path = self.file
        with self._file_lock():
            keys = self._read_file()
            if key is None:
                if provider not in keys:
                    return path
                del keys[provider]
            else:
                keys[provider] = key
            if keys:
                doc = {"version": FILE_VERSION, "keys": dict(sorted(keys.items()))}
                try:
                    write_private_file(path, json.dumps(doc, indent=2) + "\n")
                except UnsafeDirectory as exc:
                    raise UsageError(str(exc)) from exc
            else:
                # No keys left: leave no secrets file behind.
                path.unlink(missing_ok=True)
            self._file_stamp = None  # re-read (and re-check) on next use
        return path


def _check_private(path: Path, st: os.stat_result) -> None:
    """Refuse a key file others could read or change, as ssh refuses a private key."""
    if st.st_uid != os.getuid():
        raise UsageError(
            f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
            "kyros will not read API keys from it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UsageError(
            f"{path} is accessible by other users (mode {mode:o}); kyros will not read API "
            f"keys from it. Fix it with: chmod 600 {path} (and consider rotating the keys)"
        )


def _parse(path: Path, raw: bytes) -> dict[str, str]:
    if len(raw) > _MAX_FILE_BYTES:
        raise UsageError(f"{path} is larger than {_MAX_FILE_BYTES} bytes; it is not a key file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        # No excerpt of the content in the message: it holds keys.
        raise UsageError(f"{path} is not valid JSON; fix or remove it") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
        raise UsageError(f'{path} has no "keys" object; fix or remove it')
    if doc.get("version") != FILE_VERSION:
        raise UsageError(
            f"{path} has version {doc.get('version')!r}; this kyros reads version {FILE_VERSION}"
        )
    keys: dict[str, str] = {}
    for provider, key in doc["keys"].items():
        # Entries edited by hand into something unusable are skipped, not fatal.
        if (
            isinstance(provider, str)
            and (provider in PROVIDER_KEYS or _PROVIDER_NAME.fullmatch(provider))
            and isinstance(key, str)
            and key
        ):
            keys[provider] = key
    return keys
