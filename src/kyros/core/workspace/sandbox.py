"""Where an implement run works, and its diff: never the user's checkout.

Worktree
    A workspace inside a git repository with at least one commit gets ``git worktree add`` on a
    new branch ``kyros/<run-id>`` at the commit HEAD names (recorded as ``base``), in
    ``<sandboxes_dir>/<run-id>``. The user's uncommitted and untracked files are *not* carried
    over: the run starts from what is committed, which is what its diff is measured against and
    what a reviewer can check out again. The worktree covers the whole repository; when the
    workspace is a subdirectory, :attr:`Sandbox.root` is that subdirectory inside the worktree
    and the diff is limited to it (an edit outside the workspace is not part of the result).
Copy
    A directory outside git, or a repository with no commit yet, is copied, and a throwaway
    repository inside the copy holds the copied state as one commit, so the diff is ``git diff``
    there too (:mod:`.workcopy`).

:func:`create_sandbox` writes ``<sandboxes_dir>/<run-id>.json`` once the sandbox is complete; a
daemon restarted mid-run calls it again and gets the same sandbox back, with the work done so far.
A directory without that record is a creation that was interrupted, and is started over.

A sandbox keeps the run's edits out of the checkout; it is not a security boundary (the agent
runs with the user's rights, and a symlink in the tree points where it pointed). Everything here
blocks; callers on an event loop run it in a thread. Applying the diff: :mod:`.applydiff`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from kyros.core.workspace.gitexec import TREE_TIMEOUT_S, GitError, clean_stderr, run_git
from kyros.core.workspace.workcopy import COPY_BASE_REF, is_copy, make_copy
from kyros.errors import Conflict, InvalidInput, KyrosError, NotFound

SandboxKind = Literal["worktree", "copy"]

BRANCH_PREFIX = "kyros/"
#: Run ids become a directory and a branch name: no dots (``..``, ``.lock``), slashes or spaces.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories


@dataclass(frozen=True)
class Sandbox:
    """A run's working directory and what it was made from.

    ``root`` is where the run works (the workspace inside the worktree or copy); ``source`` the
    user's workspace; ``branch`` and ``base`` (a commit of the user's repository) are set for
    worktrees only; ``subdir`` is the workspace's path in its repository (``""`` at the top);
    ``note`` says anything a user should know about how the sandbox was made.
    """

    root: Path
    source: Path
    kind: SandboxKind
    branch: str | None = None
    base: str | None = None
    subdir: str = ""
    note: str = ""

    @property
    def top(self) -> Path:
        """The worktree or copy itself, where git runs for the diff."""
        return _up(self.root, self.subdir)

    @property
    def source_top(self) -> Path:
        """The top of the user's repository (for a copy: the workspace)."""
        return _up(self.source, self.subdir)

    @property
    def run_id(self) -> str:
        return self.top.name

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for a run's output; :meth:`from_json` rebuilds the sandbox."""
        data = asdict(self)
        data.update(version=1, root=str(self.root), source=str(self.source))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sandbox:
        """Rebuild a sandbox from :meth:`to_json`, checking every field (the record decides
        what :func:`remove_sandbox` deletes)."""
        try:
            kind, root, source = data["kind"], data["root"], data["source"]
            branch, base = data.get("branch"), data.get("base")
            subdir, note = data.get("subdir", ""), data.get("note", "")
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"not a sandbox record: {exc}") from exc
        if data.get("version") != 1 or kind not in ("worktree", "copy"):
            raise InvalidInput("not a sandbox record: unknown version or kind")
        if not all(isinstance(v, str) for v in (root, source, subdir, note)):
            raise InvalidInput("not a sandbox record: root, source, subdir and note are strings")
        sb = cls(Path(root), Path(source), kind, branch, base, subdir, note)
        parts = PurePosixPath(subdir).parts
        if (
            not (sb.root.is_absolute() and sb.source.is_absolute())
            or ".." in parts
            or (subdir and (subdir.startswith("/") or not _ends_with(sb.root, sb.source, parts)))
            or not _RUN_ID.fullmatch(sb.run_id)
        ):
            raise InvalidInput("not a sandbox record: inconsistent paths")
        expected = (f"{BRANCH_PREFIX}{sb.run_id}", True) if kind == "worktree" else (None, False)
        # base becomes a git argument: a commit id and nothing else.
        has_base = isinstance(base, str) and _COMMIT.fullmatch(base) is not None
        if branch != expected[0] or (base is not None and not has_base) or has_base != expected[1]:
            raise InvalidInput("not a sandbox record: branch or base do not fit its kind")
        return sb


def create_sandbox(source: Path, run_id: str, sandboxes_dir: Path) -> Sandbox:
    """Make (or find again) the sandbox of run ``run_id`` for the workspace ``source``.

    Idempotent: when the sandbox of this run exists it is returned as it is, edits included.
    Raises :class:`InvalidInput` for a bad run id, a missing workspace or a ``sandboxes_dir``
    inside the workspace's tree, :class:`Conflict` when the run's sandbox belongs to another
    workspace, :class:`~kyros.errors.PayloadTooLarge` for a copy past
    :data:`.workcopy.MAX_COPY_FILES` or :data:`.workcopy.MAX_COPY_BYTES`, and
    :class:`GitError` with git's message when git fails.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidInput(f"run id {run_id!r} cannot name a sandbox (letters, digits, _ and -)")
    if not source.is_dir():
        raise InvalidInput(f"workspace {str(source)!r} is not a directory")
    source, sandboxes_dir = source.resolve(), sandboxes_dir.resolve()
    top = sandboxes_dir / run_id
    record = sandboxes_dir / f"{run_id}.json"
    recorded = _read_record(record)
    if recorded is not None:
        if recorded.source != source:
            raise Conflict(f"run {run_id} already has a sandbox, for {recorded.source}")
        if recorded.top.is_dir():
            return recorded
    repo_top = _repo_top(source)
    tree = repo_top or source
    if sandboxes_dir == tree or tree in sandboxes_dir.parents:
        # It would show up in the user's `git status`, or be copied into itself.
        raise InvalidInput(f"the sandboxes directory {sandboxes_dir} is inside {tree}")
    sandboxes_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _discard_partial(top, repo_top)
    head = _head(repo_top) if repo_top is not None else None
    if repo_top is not None and head is not None:
        sb = _make_worktree(repo_top, source, top, head, recorded)
    else:
        note = ""
        if repo_top is not None:
            note = (
                f"the repository at {repo_top} has no commit yet, so the run works on a copy "
                "of the workspace and its result is applied as a patch"
            )
        make_copy(source, top)
        sb = Sandbox(top, source, "copy", note=note)
    tmp = record.with_name(f".{record.name}.tmp")
    tmp.write_text(json.dumps(sb.to_json(), indent=1))
    os.replace(tmp, record)  # the record appears complete or not at all
    return sb


#: Untracked files never counted as part of a run's change (tracked files always are).
BUILD_LEFTOVERS = (
    "__pycache__/",
    "*.py[co]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".tox/",
    ".nox/",
    "node_modules/",
    ".coverage",
    ".DS_Store",
)


def sandbox_diff(sb: Sandbox) -> str:
    """The run's changes as a git-format unified diff; ``""`` when nothing changed.

    Measured from the base to the files as they are now, whatever the run did with git in the
    sandbox (commits included): modified, new untracked (unless ignored) and deleted files, with
    ``--binary`` so binary files apply too, no renames (a rename is a deletion and an addition),
    and paths relative to the top of the repository (of the copy in copy mode).

    Untracked files are staged into a *temporary* index (``GIT_INDEX_FILE``), a copy of the
    sandbox's own, rather than marked with ``git add -N``: that would write intent-to-add entries
    into the index the run itself may be using (its ``git status``, its commits), while a copy
    keeps git's stat cache, so only files that changed are read again.
    """
    top = sb.top
    if not top.is_dir():
        raise NotFound(f"the sandbox {top} no longer exists")
    base = sb.base if sb.kind == "worktree" and sb.base else COPY_BASE_REF
    pathspec = [sb.subdir] if sb.subdir else []
    out = run_git(top, "rev-parse", "--git-path", "index").stdout
    index = top / os.fsdecode(out.rstrip(b"\n"))
    with tempfile.TemporaryDirectory(prefix="kyros-diff-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if index.is_file():
            shutil.copyfile(index, env["GIT_INDEX_FILE"])
        else:
            run_git(top, "read-tree", "--end-of-options", base, env=env)
        literal = "--literal-pathspecs"
        # Caches the run's own commands left behind (pytest, mypy, npm) are not its change.
        junk = os.path.join(tmp, "exclude")
        Path(junk).write_text("\n".join(BUILD_LEFTOVERS) + "\n", encoding="utf-8")
        run_git(
            top,
            literal,
            "-c",
            f"core.excludesFile={junk}",
            "add",
            "--all",
            "--",
            *pathspec,
            env=env,
            timeout=TREE_TIMEOUT_S,
        )
        proc = run_git(
            top,
            literal,
            "-c",
            "diff.noprefix=false",  # a user's prefix settings would make the patch unappliable
            "-c",
            "diff.mnemonicPrefix=false",
            "diff",
            "--cached",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
            "--end-of-options",  # the base is a revision, whatever a record said
            base,
            "--",
            *pathspec,
            env=env,
            timeout=TREE_TIMEOUT_S,
        )
    # Paths and contents are bytes; surrogateescape lets non-UTF-8 ones round-trip to apply.
    return proc.stdout.decode("utf-8", "surrogateescape")


def remove_sandbox(sb: Sandbox, *, delete_branch: bool = False) -> None:
    """Delete the sandbox and its record; for a worktree, unregister it and, with
    ``delete_branch``, delete its branch too (kept by default: it holds the run's commits).
    Idempotent: what is already gone is skipped."""
    top = sb.top
    if sb.kind == "worktree":
        repo = sb.source_top
        has_repo = (repo / ".git").exists()
        if has_repo:
            _unregister(repo, top)
        if top.is_dir() and (top / ".git").is_file():  # a linked worktree: never the checkout
            shutil.rmtree(top)
        if has_repo and delete_branch and sb.branch and _has_branch(repo, sb.branch):
            run_git(repo, "branch", "-D", sb.branch)
    elif top.is_dir():
        if not is_copy(top):
            raise InvalidInput(f"{top} is not a kyros sandbox; it was left in place")
        shutil.rmtree(top)
    top.with_name(f"{top.name}.json").unlink(missing_ok=True)


def has_own_commits(sb: Sandbox) -> bool:
    """Whether the run committed on its branch (commits past ``base`` nobody else has)."""
    if sb.kind != "worktree" or not sb.branch or not sb.base:
        return False
    repo = sb.source_top
    if not (repo / ".git").exists() or not _has_branch(repo, sb.branch):
        return False
    done = run_git(repo, "rev-list", "--count", f"{sb.base}..refs/heads/{sb.branch}", ok=(0, 128))
    return done.returncode == 0 and int(done.stdout.decode().strip() or 0) > 0


def recorded_sandboxes(sandboxes_dir: Path) -> list[Sandbox]:
    """Every complete sandbox under ``sandboxes_dir`` (by its record); damaged records are
    left alone, with the sandbox next to them."""
    found = []
    for record in sorted(sandboxes_dir.glob("*.json")) if sandboxes_dir.is_dir() else []:
        try:
            sb = _read_record(record)
        except KyrosError:
            continue
        if sb is not None and sb.top == record.with_suffix(""):
            found.append(sb)
    return found


# --- making ---------------------------------------------------------------------------------


def _repo_top(source: Path) -> Path | None:
    """The top of the work tree ``source`` is in; ``None`` outside git."""
    # C locale: the one failure that means "not a repository" is recognised by its words.
    proc = run_git(source, "rev-parse", "--show-toplevel", env={"LC_ALL": "C"}, ok=(0, 128))
    if proc.returncode != 0:
        message = clean_stderr(proc.stderr)
        if "not a git repository" in message:
            return None
        raise GitError(f"git cannot use the repository at {source}: {message}")
    return Path(os.fsdecode(proc.stdout.rstrip(b"\n"))).resolve()


def _head(repo_top: Path) -> str | None:
    """The commit HEAD names; ``None`` in a repository without commits."""
    proc = run_git(repo_top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
    return proc.stdout.decode().strip() or None


def _has_branch(repo: Path, branch: str) -> bool:
    ref = f"refs/heads/{branch}"
    return run_git(repo, "rev-parse", "--verify", "--quiet", ref, ok=(0, 1)).returncode == 0


def _unregister(repo: Path, top: Path) -> None:
    """Remove the worktree at ``top`` from ``repo``, its directory too if still there.

    By path, not ``git worktree prune``: that would also forget the user's own worktrees whose
    directories are missing for a while (an unmounted disk). Twice ``--force``: also when dirty
    or locked. Not registered (exit 128) is fine; a worktree git cannot remove (a submodule
    inside) is deleted by the caller.
    """
    run_git(repo, "worktree", "remove", "--force", "--force", str(top), ok=range(256))


def _discard_partial(top: Path, repo_top: Path | None) -> None:
    """Remove what an interrupted creation left (the record is written last, so no run has
    worked in it yet)."""
    if repo_top is not None:
        _unregister(repo_top, top)
    if top.is_symlink():
        top.unlink()
    elif top.exists():
        shutil.rmtree(top)


def _make_worktree(
    repo_top: Path, source: Path, top: Path, head: str, recorded: Sandbox | None
) -> Sandbox:
    branch = f"{BRANCH_PREFIX}{top.name}"
    subdir = "/".join(source.relative_to(repo_top).parts)  # "" at the top
    if _has_branch(repo_top, branch):
        # The run's earlier worktree was lost (or its creation interrupted): its branch, with
        # any commits, is what the run continues from.
        if recorded is not None and recorded.base:
            base = recorded.base
        else:
            proc = run_git(repo_top, "merge-base", branch, head, ok=(0, 1))
            base = proc.stdout.decode().strip() or head
        run_git(repo_top, "worktree", "add", str(top), branch, timeout=TREE_TIMEOUT_S)
    else:
        base = head
        # The commit, not "HEAD": the base recorded is the one checked out even if HEAD moves.
        run_git(repo_top, "worktree", "add", "-b", branch, str(top), head, timeout=TREE_TIMEOUT_S)
    root = top / subdir if subdir else top
    note = ""
    if not root.is_dir():
        root.mkdir(parents=True)
        note = f"{subdir} is not in commit {base[:12]}: the run starts from an empty directory"
    return Sandbox(root, source, "worktree", branch, base, subdir, note)


def _read_record(record: Path) -> Sandbox | None:
    try:
        text = record.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KyrosError(f"cannot read the sandbox record {record}: {exc}") from exc
    try:
        return Sandbox.from_json(json.loads(text))
    except (ValueError, InvalidInput) as exc:
        # Not started over: the sandbox next to it may hold a run's work.
        raise KyrosError(
            f"the sandbox record {record} is damaged ({exc}); remove it and the sandbox "
            "directory to start the run over"
        ) from exc


# --- paths ----------------------------------------------------------------------------------


def _up(path: Path, subdir: str) -> Path:
    """``path`` without its last ``subdir`` components."""
    depth = len(PurePosixPath(subdir).parts) if subdir else 0
    return path.parents[depth - 1] if depth else path


def _ends_with(root: Path, source: Path, parts: tuple[str, ...]) -> bool:
    n = len(parts)
    return root.parts[-n:] == parts and source.parts[-n:] == parts
