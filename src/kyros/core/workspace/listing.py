"""Listing a workspace: git-aware, bounded, never following links out of it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kyros.core.workspace import model
from kyros.core.workspace.gitexec import git_env
from kyros.core.workspace.model import (
    _BINARY_SUFFIXES,
    _ENV_TEMPLATES,
    _NEVER_READ_NAMES,
    _NEVER_READ_SUFFIXES,
    BINARY_PROBE_BYTES,
    GIT_TIMEOUT_S,
    MAX_FILE_BYTES,
    SKIP_DIRS,
)

# --- listing -------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    # One allow-list for every git kyros runs: see gitexec.git_env.
    return git_env()


def _git_list(root: Path) -> list[str] | None:
    """Paths from ``git ls-files`` relative to ``root``; ``None`` when ``root`` is not in a work
    tree (or git is missing, refuses the repository, or is too slow)."""
    git = shutil.which("git")
    if git is None:
        return None
    cmd = [
        git,
        "-c",
        "core.fsmonitor=false",  # a repo-configured fsmonitor is a command git would run
        "-c",
        f"core.hooksPath={os.devnull}",
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    paths = (os.fsdecode(raw) for raw in proc.stdout.split(b"\0") if raw)
    # --cached lists a file once per unmerged stage during a conflict.
    return sorted(set(paths))


def _walk(root: Path) -> list[str]:
    """Relative paths of the files under ``root`` in sorted depth-first order, without the
    directories in :data:`SKIP_DIRS`, hidden directories, or symlinked directories."""
    found: list[str] = []
    stack = [""]
    while stack and len(found) <= model.MAX_LISTED_FILES:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                    subdirs.append(rel)
            else:
                found.append(rel)
        stack.extend(reversed(subdirs))
    return found


def _skipped_dir(rel: str) -> bool:
    parts = rel.split("/")
    return any(part in SKIP_DIRS for part in parts[:-1])


def _hidden_target(rel: str) -> bool:
    """Whether a symlink target (relative to the root) lies where the listing never looks."""
    parts = rel.split("/")[:-1]
    return any(part in SKIP_DIRS or part.startswith(".") for part in parts)


@dataclass
class _Entry:
    rel: str
    full: str
    size: int
    readable: bool  # eligible for content selection
    path_score: float = 0.0
    content_score: float = 0.0

    @property
    def score(self) -> float:
        return self.path_score + self.content_score


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _never_read(name: str) -> bool:
    lower = name.lower()
    if lower in _NEVER_READ_NAMES or lower.endswith(_NEVER_READ_SUFFIXES):
        return True
    if lower.startswith(".env.") and lower not in _ENV_TEMPLATES:
        return True
    return os.path.splitext(lower)[1] in _BINARY_SUFFIXES


def _classify(root: Path, rels: list[str]) -> tuple[list[_Entry], int]:
    """Stat the listed paths: keep regular files (and symlinks to regular files inside the root),
    note which may be read, and count the rest as skipped."""
    root_str = str(root)
    entries: list[_Entry] = []
    skipped = 0
    for rel in rels:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # a non-UTF-8 name cannot go into a prompt
            skipped += 1
            continue
        full = os.path.join(root_str, rel)
        try:
            st = os.lstat(full)
            target = full
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(full)
                target_rel = os.path.relpath(real, root_str).replace(os.sep, "/")
                if not _inside(real, root_str) or _hidden_target(target_rel):
                    skipped += 1
                    continue
                st = os.stat(full)
                target = real
        except OSError:  # tracked but deleted, or a dangling symlink
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        readable = (
            st.st_size <= MAX_FILE_BYTES
            and not _never_read(os.path.basename(full))
            and (target is full or not _never_read(os.path.basename(target)))
        )
        if not readable:
            skipped += 1
        entries.append(_Entry(rel=rel, full=full, size=st.st_size, readable=readable))
    return entries, skipped


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_PROBE_BYTES]
