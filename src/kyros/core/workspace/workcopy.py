"""A copy of a directory outside git, with a throwaway repository that makes its diff ``git diff``.

The copy leaves out :data:`COPY_SKIP_DIRS` and every ``.git``; a repository initialised inside
it holds the copied state as one commit, kept as :data:`COPY_BASE_REF` so that commits made by
the run in the copy stay part of its diff. Its blobs are the copied bytes, without end-of-line
or filter conversions (``.git/info/attributes``), so a file in the workspace can be compared to
the base by hashing it (see :mod:`.applydiff`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kyros.core.workspace.gitexec import TREE_TIMEOUT_S, run_git
from kyros.errors import KyrosError, PayloadTooLarge

#: Not copied, and ignored by the copy's repository: caches and installed dependencies, which the
#: run can rebuild. ``dist`` and ``build`` are copied: in some projects they are sources.
COPY_SKIP_DIRS = frozenset(
    {
        ".git",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".kyros",
    }
)
#: A larger directory is refused: it is more likely a home directory picked by mistake than a
#: project, and every diff walks all of the copy.
MAX_COPY_FILES = 50_000
MAX_COPY_BYTES = 1024**3

#: In the copy's repository: the copied state, what its diff is taken against.
COPY_BASE_REF = "refs/kyros/base"
#: A file in the copy's ``.git``: the directory is one of ours, and may be deleted.
COPY_MARKER = "kyros-sandbox"

_INITIAL_COMMIT = (
    "-c",
    "user.name=kyros",
    "-c",
    "user.email=kyros@localhost",
    "-c",
    "commit.gpgsign=false",
    "commit",
    "--quiet",
    "--allow-empty",
    "--no-verify",
    "--message=kyros: the workspace as copied",
)


def make_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` (which must not exist) and commit it in a new repository
    there. Built next to ``dest`` and renamed into place, so ``dest`` is complete or absent."""
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted attempt
    try:
        _copy_tree(source, partial)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise KyrosError(f"could not copy {source} into a sandbox: {exc}") from exc
    git_dir = partial / ".git"
    run_git(partial, "init", "--quiet", "--template=", "--initial-branch=kyros")
    (git_dir / "info").mkdir()
    (git_dir / "info" / "exclude").write_text(
        "".join(f"{name}/\n" for name in sorted(COPY_SKIP_DIRS - {".git"}))
    )
    (git_dir / "info" / "attributes").write_text("* -text -filter -ident\n")
    (git_dir / COPY_MARKER).write_text("")
    run_git(partial, "add", "--all", timeout=TREE_TIMEOUT_S)
    run_git(partial, *_INITIAL_COMMIT, timeout=TREE_TIMEOUT_S)
    run_git(partial, "update-ref", COPY_BASE_REF, "HEAD")
    os.replace(partial, dest)


def is_copy(path: Path) -> bool:
    """Whether ``path`` is a copy made by :func:`make_copy`."""
    return (path / ".git" / COPY_MARKER).is_file()


def _copy_tree(source: Path, dest: Path) -> None:
    """Directories, regular files and symlinks (as links, never followed); no sockets, fifos or
    devices (opening a fifo to copy it would block)."""
    entries: list[tuple[str, str]] = []
    size = 0
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(source / rel_dir) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.name == ".git":
                    continue  # a nested repository's files are copied, its history is not
                if entry.is_symlink():
                    entries.append((rel, "link"))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name not in COPY_SKIP_DIRS:
                        entries.append((rel, "dir"))
                        stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
                    entries.append((rel, "file"))
        if len(entries) > MAX_COPY_FILES or size > MAX_COPY_BYTES:
            raise PayloadTooLarge(
                f"{source} is too large to copy into a sandbox (more than {MAX_COPY_FILES} "
                f"entries or {MAX_COPY_BYTES // 1024**2} MiB); make it a git repository instead"
            )
    dest.mkdir(mode=0o700)
    for rel, kind in entries:
        if kind == "dir":
            (dest / rel).mkdir()
        elif kind == "link":
            os.symlink(os.readlink(source / rel), dest / rel)
        else:
            shutil.copy2(source / rel, dest / rel)
