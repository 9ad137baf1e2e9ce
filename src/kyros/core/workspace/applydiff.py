"""Bringing a run's diff into the user's workspace: all of it or nothing, never over their edits.

Refused with :class:`~kyros.errors.Conflict`, before any file is written, when

* a file the diff touches has changes the run did not start from. In a git checkout that is
  any uncommitted change to it (staged, unstaged, or an untracked file where the diff creates
  one); files the diff does not touch may be dirty, since applying leaves them alone. In a copy
  sandbox's workspace it is any change since the copy was made (its bytes against the copy's
  base);
* the diff does not apply (``git apply --check``), e.g. the user committed changes to the same
  lines after the run started. git's own explanation is in the message.

The diff is applied to the working tree only, as ``git apply`` does without ``--index``: the
user's index is not touched, and new files arrive untracked, to be reviewed and committed by the
user. Paths outside the workspace (``../``, absolute, through a symlink) are refused by git.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from kyros.core.workspace.gitexec import clean_stderr, run_git
from kyros.core.workspace.sandbox import Sandbox, sandbox_diff
from kyros.core.workspace.workcopy import COPY_BASE_REF
from kyros.errors import Conflict, InvalidInput, NotFound

#: A user's ``apply.whitespace=error`` would refuse a run's trailing spaces; the run's output is
#: applied as it is (it was reviewed as a diff).
_APPLY_FLAGS = ("--whitespace=nowarn",)
#: File names listed in a refusal before "and N more".
_MAX_NAMED = 10


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_to_source` changed: ``files`` relative to the top of the user's
    repository (to the workspace for a copy sandbox), and a one-line ``summary``."""

    files: list[str]
    summary: str


def apply_to_source(sb: Sandbox, diff: str | None = None) -> ApplyResult:
    """Apply ``diff`` (by default the sandbox's current :func:`sandbox_diff`) to ``sb.source``.

    Raises :class:`Conflict` as the module docstring says, :class:`InvalidInput` when ``diff``
    is not a patch, :class:`NotFound` when the workspace is gone. For a copy sandbox already
    removed, the since-copy check is skipped and ``git apply --check`` alone decides.
    """
    text = sandbox_diff(sb) if diff is None else diff
    if not text.strip():
        return ApplyResult(files=[], summary="nothing to apply: the run changed no files")
    patch = text.encode("utf-8", "surrogateescape")
    if sb.kind == "worktree":
        target, env = sb.source_top, {}
    else:
        # Outside git, `git apply` works like patch(1) in the current directory. Without a
        # ceiling, a workspace inside a repository without commits would be found to be in it,
        # and git would silently skip every path of a git-format patch as outside the
        # subdirectory it runs in.
        target, env = sb.source, {"GIT_CEILING_DIRECTORIES": str(sb.source.parent)}
    if not target.is_dir():
        raise NotFound(f"the workspace {target} no longer exists")

    stats = _numstat(target, env, patch)
    files = sorted({path for path, _, _ in stats})
    if sb.kind == "worktree":
        dirty = _uncommitted(target, files)
        why = f"{target} has uncommitted changes in files the run also changed"
    else:
        dirty = _changed_since_copy(sb, files) if sb.top.is_dir() else []
        why = f"files the run changed were also changed in {target} since the run started"
    if dirty:
        raise Conflict(
            f"{why}: {_names(dirty)}; commit, stash or undo them, then apply again",
            detail={"files": dirty},
        )
    check = run_git(target, "apply", "--check", *_APPLY_FLAGS, stdin=patch, env=env, ok=range(256))
    if check.returncode != 0:
        raise Conflict(
            f"the run's changes do not apply to {target}: {clean_stderr(check.stderr)}",
            detail={"files": files},
        )
    existed = {f for f in files if os.path.lexists(target / f)}
    run_git(target, "apply", *_APPLY_FLAGS, stdin=patch, env=env)
    exists = {f for f in files if os.path.lexists(target / f)}
    added, deleted = len(exists - existed), len(existed - exists)
    plus, minus = sum(s[1] for s in stats), sum(s[2] for s in stats)
    summary = (
        f"applied {len(files)} file{'s' if len(files) != 1 else ''} to {target}: {added} added, "
        f"{len(files) - added - deleted} modified, {deleted} deleted (+{plus} -{minus})"
    )
    return ApplyResult(files=files, summary=summary)


def _numstat(target: Path, env: dict[str, str], patch: bytes) -> list[tuple[str, int, int]]:
    """``(path, lines added, lines deleted)`` per path the patch touches, as git reads it."""
    proc = run_git(target, "apply", "--numstat", "-z", stdin=patch, env=env, ok=range(256))
    if proc.returncode != 0:
        raise InvalidInput(f"the diff is not a patch git can read: {clean_stderr(proc.stderr)}")
    stats: list[tuple[str, int, int]] = []
    fields = proc.stdout.split(b"\0")
    i = 0
    while i < len(fields):
        record, i = fields[i], i + 1
        if not record:
            continue
        added, deleted, path = record.split(b"\t", 2)
        paths = [path]
        if not path:  # a rename or copy: the old and the new path follow
            paths, i = fields[i : i + 2], i + 2
        for raw in paths:
            # Binary files count "-" lines.
            stats.append((os.fsdecode(raw), _int(added), _int(deleted)))
    return stats


def _int(field: bytes) -> int:
    return int(field) if field.isdigit() else 0


def _uncommitted(repo: Path, files: list[str]) -> list[str]:
    """Those of ``files`` with staged, unstaged or untracked changes in ``repo``."""
    proc = run_git(
        repo,
        "--literal-pathspecs",
        "status",
        "--porcelain=v1",
        "-z",
        "--no-renames",
        "--untracked-files=all",
        "--",
        *files,
    )
    return sorted({os.fsdecode(entry[3:]) for entry in proc.stdout.split(b"\0") if entry})


def _changed_since_copy(sb: Sandbox, files: list[str]) -> list[str]:
    """Those of ``files`` whose bytes in the workspace differ from the copy's base (the copy's
    repository stores them unconverted, see :mod:`.workcopy`)."""
    proc = run_git(sb.top, "ls-tree", "-r", "-z", "--full-tree", COPY_BASE_REF)
    base: dict[str, tuple[str, str]] = {}
    for entry in proc.stdout.split(b"\0"):
        if entry:
            meta, name = entry.split(b"\t", 1)
            mode, _, oid = meta.decode().split(" ")
            base[os.fsdecode(name)] = (mode, oid)
    changed = []
    for rel in files:
        path = sb.source / rel
        known = base.get(rel)
        if known is None:
            differs = os.path.lexists(path)
        elif path.is_symlink():
            target = os.fsencode(os.readlink(path))
            differs = known[0] != "120000" or _blob_id(target, known[1]) != known[1]
        elif path.is_file():
            differs = known[0] == "120000" or _blob_id(path.read_bytes(), known[1]) != known[1]
        else:
            differs = True  # deleted, or no longer a file
        if differs:
            changed.append(rel)
    return changed


def _blob_id(data: bytes, like: str) -> str:
    """git's object id for a blob of ``data``, in the hash of the id ``like``."""
    h = hashlib.sha256() if len(like) == 64 else hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _names(files: list[str]) -> str:
    named = ", ".join(files[:_MAX_NAMED])
    more = len(files) - _MAX_NAMED
    return f"{named} and {more} more" if more > 0 else named
