"""Every filesystem location kyros uses, derived from the XDG base-directory variables.

Setting ``XDG_RUNTIME_DIR``, ``XDG_DATA_HOME``, ``XDG_CONFIG_HOME``, ``XDG_STATE_HOME`` and
``XDG_CACHE_HOME`` relocates all of kyros, which is how tests isolate themselves.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

APP = "kyros"


def _xdg(var: str, fallback: str, env: dict[str, str]) -> Path:
    value = env.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path(env.get("HOME") or os.path.expanduser("~")) / fallback


@dataclass(frozen=True)
class Paths:
    """Resolved kyros directories and files. Build with :func:`resolve`."""

    runtime_dir: Path
    data_dir: Path
    config_dir: Path
    state_dir: Path
    cache_dir: Path

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "kyros.sock"

    @property
    def lock_file(self) -> Path:
        return self.runtime_dir / "kyros.lock"

    @property
    def status_file(self) -> Path:
        """The running daemon's status record ``{pid, socket, version, api_version}``."""
        return self.runtime_dir / "daemon.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "kyros.db"

    @property
    def sandboxes(self) -> Path:
        """Where implement runs work: one git worktree (or copy) per run."""
        return self.data_dir / "worktrees"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "daemon.log"

    @property
    def token_hash_file(self) -> Path:
        """SHA-256 of the daemon's TCP bearer token (the daemon only ever stores the hash)."""
        return self.state_dir / "daemon-token.sha256"

    @property
    def credentials_file(self) -> Path:
        """The local user's client credentials (0600): the daemon token for this machine."""
        return self.state_dir / "credentials.json"

    @property
    def provider_keys_file(self) -> Path:
        """Provider API keys stored by `kyros auth set-key` when no OS keyring is usable (0600)."""
        return self.state_dir / "provider-keys.json"


def resolve(env: dict[str, str] | None = None) -> Paths:
    """Compute kyros's paths from ``env`` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        runtime_base = Path(runtime)
    else:
        # No XDG_RUNTIME_DIR (ssh sessions, containers): a per-user dir under the temp dir,
        # as tmux does. Its permissions are checked before use (RELIABILITY S1).
        runtime_base = Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"
        return Paths(
            runtime_dir=runtime_base,
            data_dir=_xdg("XDG_DATA_HOME", ".local/share", env) / APP,
            config_dir=_xdg("XDG_CONFIG_HOME", ".config", env) / APP,
            state_dir=_xdg("XDG_STATE_HOME", ".local/state", env) / APP,
            cache_dir=_xdg("XDG_CACHE_HOME", ".cache", env) / APP,
        )
    return Paths(
        runtime_dir=runtime_base / APP,
        data_dir=_xdg("XDG_DATA_HOME", ".local/share", env) / APP,
        config_dir=_xdg("XDG_CONFIG_HOME", ".config", env) / APP,
        state_dir=_xdg("XDG_STATE_HOME", ".local/state", env) / APP,
        cache_dir=_xdg("XDG_CACHE_HOME", ".cache", env) / APP,
    )


class UnsafeDirectory(Exception):
    """A directory kyros must own privately is shared with other users."""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` as 0700 if missing; refuse it if another user owns it or can write it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectory(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"fix it with: chmod 700 {path}"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def owner_name(uid: int) -> str:
    """``uid 65534 (nobody)``: a uid as a message names it."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def trusted_uids() -> frozenset[int]:
    """Who may own kyros's runtime directories and serve its socket: this user, and root (who
    can read and replace anything of this user's anyway)."""
    return frozenset({os.getuid(), 0})


def shared_dir_problem(path: Path, st: os.stat_result) -> str | None:
    """Why another user could replace what is inside the directory ``path`` (its ``st``), or
    None: owned by someone other than this user or root, or writable by group or others
    without the sticky bit (a sticky ``/tmp`` lets each user remove only their own files)."""
    if st.st_uid not in trusted_uids():
        return f"{path} is owned by {owner_name(st.st_uid)}, not by you, {owner_name(os.getuid())}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return (
            f"{path} is writable by other users without the sticky bit "
            f"(mode {stat.S_IMODE(st.st_mode):o}): another user could replace kyros's directory "
            f"in it; fix it with: chmod 700 {path} (or chmod 1777 for a shared one)"
        )
    return None


def ensure_runtime_dir(path: Path) -> Path:
    """:func:`ensure_private_dir` for the directory of the socket and the instance lock, after
    checking every directory above it (RELIABILITY S1): in a parent other users can write
    without the sticky bit, another user could rename ours away and put their own socket in
    its place. Missing parents are created 0700, not with the umask's usual 0755."""
    path = Path(os.path.abspath(path))
    existing = path.parent
    missing: list[Path] = []
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    real = existing.resolve()
    for directory in (real, *real.parents):
        problem = shared_dir_problem(directory, directory.stat())
        if problem:
            raise UnsafeDirectory(problem)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        problem = shared_dir_problem(directory, directory.lstat())
        if problem:
            raise UnsafeDirectory(problem)
    return ensure_private_dir(path)


def write_private_file(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
