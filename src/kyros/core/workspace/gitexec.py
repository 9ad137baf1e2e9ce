"""Running git for sandboxes: an allow-listed environment, no repository hooks, bounded time.

Every call made through :func:`run_git` gets

* :func:`git_env` as its whole environment, so provider keys and tokens in the daemon's
  environment never reach git or anything git starts (filters, credential helpers), and
  ``GIT_DIR``, ``GIT_WORK_TREE``, ``GIT_INDEX_FILE`` and friends cannot point it elsewhere;
* :data:`SAFE_CONFIG`: the hooks and fsmonitor configured for the repository (commands its
  owner chose) do not run, and no background gc or maintenance is started in the user's
  repository. Its clean and smudge filters (Git LFS) do run: files are not what they should be
  without them;
* a timeout, captured output, and a :class:`GitError` carrying git's own words on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from kyros.errors import KyrosError

#: Quick commands (rev-parse, status, apply, worktree remove) get this long.
GIT_TIMEOUT_S = 60.0
#: Commands that read or write every file of a tree (``worktree add``, ``add -A``, the first
#: commit of a copy) get longer: their time grows with the size of the workspace.
TREE_TIMEOUT_S = 600.0

#: The only variables taken from the daemon's environment (the allow-list of
#: ``listing._git_env``, kept in step with it).
GIT_ENV_ALLOWED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")

SAFE_CONFIG = (
    "-c",
    f"core.hooksPath={os.devnull}",  # post-checkout and friends must not run in a sandbox
    "-c",
    "core.fsmonitor=false",  # a repo-configured fsmonitor is a command git would run
    "-c",
    "gc.auto=0",  # no detached `gc --auto` left running in the user's repository
    "-c",
    "maintenance.auto=false",
    "-c",
    "submodule.recurse=false",  # a checkout must not go fetching submodules
    "-c",
    "core.quotepath=false",  # paths in output as they are, not octal-escaped
)

#: Lines of git's stderr that are advice, not the error.
_NOISE_PREFIXES = ("hint:", "Preparing worktree", "HEAD is now at")
_MAX_MESSAGE_CHARS = 2_000


class GitError(KyrosError):
    """git failed, timed out or is missing; the message is git's own, cleaned up."""

    code = "git_failed"


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment git runs with: :data:`GIT_ENV_ALLOWED` taken from this process,
    prompts off, optional locks off, plus ``extra`` (set by kyros itself, never inherited)."""
    env = {k: os.environ[k] for k in GIT_ENV_ALLOWED if k in os.environ}
    env["GIT_TERMINAL_PROMPT"] = "0"
    # `git status` on the user's checkout must not take index.lock while they work in it.
    env["GIT_OPTIONAL_LOCKS"] = "0"
    if extra:
        env.update(extra)
    return env


def clean_stderr(raw: bytes) -> str:
    """git's stderr as one line: advice dropped, ``error:``/``fatal:`` prefixes removed."""
    lines = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith(_NOISE_PREFIXES):
            continue
        for prefix in ("error: ", "fatal: "):
            line = line.removeprefix(prefix)
        if line not in lines:  # `git apply` says the same thing once per hunk
            lines.append(line)
    text = "; ".join(lines)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return text


def run_git(
    cwd: Path,
    *args: str,
    timeout: float = GIT_TIMEOUT_S,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    ok: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git <SAFE_CONFIG> <args>`` in ``cwd``.

    ``env`` adds variables to :func:`git_env`. A return code outside ``ok`` raises
    :class:`GitError`; pass a wider ``ok`` to inspect failures yourself.
    """
    name = _subcommand(args)
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed or not on PATH; sandboxes need it")
    cmd = [git, *SAFE_CONFIG, *args]
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=git_env(env),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(
            f"git {name} took longer than {timeout:.0f} s in {cwd} and was stopped",
            detail={"command": ["git", *args]},
        ) from exc
    except OSError as exc:
        raise GitError(f"could not run git in {cwd}: {exc}") from exc
    if proc.returncode not in ok:
        message = clean_stderr(proc.stderr) or f"exit status {proc.returncode}"
        raise GitError(
            f"git {name} failed in {cwd}: {message}",
            detail={"command": ["git", *args], "returncode": proc.returncode},
        )
    return proc


def _subcommand(args: Sequence[str]) -> str:
    """The git command in ``args`` (``commit`` in ``-c user.name=x commit -m y``), for messages."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-c":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""
