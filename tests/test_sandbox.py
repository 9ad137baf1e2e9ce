"""Sandboxes against real git repositories and directories: worktrees, copies, diffs, applying."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kyros.core.workspace import workcopy
from kyros.core.workspace.applydiff import apply_to_source
from kyros.core.workspace.gitexec import GitError, git_env, run_git
from kyros.core.workspace.sandbox import (
    Sandbox,
    create_sandbox,
    remove_sandbox,
    sandbox_diff,
)
from kyros.errors import Conflict, InvalidInput, KyrosError, PayloadTooLarge

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

APP = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The code under test passes HOME on to git: point it at an empty home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("GIT_"):
            monkeypatch.delenv(key)


def _git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return proc.stdout.decode()


def _write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _fill(root: Path) -> Path:
    _write(root, "README.md", "# proj\n")
    _write(root, "src/app.py", APP)
    _write(root, "src/old.py", "old = 1\n")
    _write(root, "data.bin", bytes(range(256)))
    return root


def _commit_all(root: Path, message: str = "change") -> str:
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = _fill(tmp_path / "proj")
    _git(root, "init", "-q", "--initial-branch=main")
    _commit_all(root, "init")
    return root


@pytest.fixture
def boxes(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but git's own, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def _status(root: Path) -> str:
    return _git(root, "status", "--porcelain", "--untracked-files=all", "--ignored")


def _edit(root: Path) -> None:
    """What a run does: modify, add (in a new directory), delete, change a binary file."""
    _write(root, "src/app.py", APP.replace("line 3\n", "line three\n"))
    _write(root, "src/new/mod.py", "new = 2\n")
    (root / "src/old.py").unlink()
    _write(root, "data.bin", bytes(reversed(range(256))))


# --- the environment git gets -------------------------------------------------------------------


def test_git_env_keeps_secrets_and_redirections_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.setenv("GIT_INDEX_FILE", "/elsewhere/index")
    monkeypatch.setenv("PATH", os.environ["PATH"])
    env = git_env()
    assert "OPENAI_API_KEY" not in env and "GITHUB_TOKEN" not in env
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env
    assert env["PATH"] == os.environ["PATH"] and env["GIT_TERMINAL_PROMPT"] == "0"
    assert "sk-secret" not in json.dumps(env)


def test_programs_git_starts_do_not_see_secrets(
    repo: Path, boxes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clean filter is a command git itself runs (on `git add`), with git's environment.
    seen = tmp_path / "filter-env"
    _git(repo, "config", "filter.spy.clean", f"env > '{seen}'; cat")
    _write(repo, ".git/info/attributes", "*.py filter=spy\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # must not redirect git either
    sb = create_sandbox(repo, "r_env", boxes)
    _write(sb.root, "src/app.py", "changed\n")
    assert "+changed" in sandbox_diff(sb)
    env = seen.read_text()
    assert "PATH=" in env  # the filter did run
    assert "sk-secret" not in env and "OPENAI_API_KEY" not in env


# --- worktrees ------------------------------------------------------------------------------


def test_worktree_on_its_own_branch_from_head(repo: Path, boxes: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD").strip()
    _write(repo, "src/app.py", "uncommitted\n")
    _write(repo, "scratch.txt", "untracked\n")
    sb = create_sandbox(repo, "r_1", boxes)
    assert sb.kind == "worktree" and sb.root == boxes.resolve() / "r_1" == sb.top
    assert sb.branch == "kyros/r_1" and sb.base == head and sb.subdir == ""
    assert _git(sb.root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "kyros/r_1"
    assert str(sb.root) in _git(repo, "worktree", "list")
    # It starts from the commit: the user's uncommitted work is theirs alone.
    assert (sb.root / "src/app.py").read_text() == APP
    assert not (sb.root / "scratch.txt").exists()
    assert sandbox_diff(sb) == ""


def test_source_untouched_while_the_sandbox_is_edited(repo: Path, boxes: Path) -> None:
    _write(repo, "notes.txt", "the user's own untracked file\n")
    _write(repo, "README.md", "# proj, being edited\n")
    files, status = _snapshot(repo), _status(repo)
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _git(sb.root, "add", "src/new/mod.py")
    sandbox_diff(sb)
    assert _snapshot(repo) == files
    assert _status(repo) == status


def test_diff_has_modified_new_deleted_and_binary_files(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(sb.root, "debug.log", "ignored\n")
    _write(sb.root, ".gitignore", "*.log\n")
    sandbox_status = _git(sb.root, "status", "--porcelain")
    diff = sandbox_diff(sb)
    assert "diff --git a/src/app.py b/src/app.py" in diff and "+line three" in diff
    assert "diff --git a/src/new/mod.py b/src/new/mod.py\nnew file mode" in diff
    assert "diff --git a/src/old.py b/src/old.py\ndeleted file mode" in diff
    assert "GIT binary patch" in diff
    assert "debug.log" not in diff  # ignored by the run's own .gitignore
    # Untracked files went into a temporary index: the sandbox's own is as the run left it.
    assert _git(sb.root, "status", "--porcelain") == sandbox_status
    assert _git(sb.root, "diff", "--cached") == ""


def test_diff_includes_what_the_run_committed(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _write(sb.root, "README.md", "# committed by the run\n")
    _commit_all(sb.root, "run's commit")
    _write(sb.root, "later.txt", "after the commit\n")
    diff = sandbox_diff(sb)
    assert "+# committed by the run" in diff and "+after the commit" in diff


def test_create_again_returns_the_same_sandbox_with_its_edits(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(repo, "README.md", "# moved\n")
    _commit_all(repo, "the user moves on")  # HEAD moves; the run's base must not
    again = create_sandbox(repo, "r_1", boxes)
    assert again == sb
    assert (again.root / "src/new/mod.py").read_text() == "new = 2\n"
    assert Sandbox.from_json(json.loads(json.dumps(sb.to_json()))) == sb


def test_create_after_the_worktree_was_lost_continues_its_branch(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _write(sb.root, "README.md", "# run's work\n")
    _commit_all(sb.root, "run's commit")
    shutil.rmtree(sb.root)
    again = create_sandbox(repo, "r_1", boxes)
    assert again.base == sb.base
    assert (again.root / "README.md").read_text() == "# run's work\n"


def test_an_interrupted_creation_is_started_over(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    (boxes / "r_1.json").unlink()  # the daemon stopped before the record was written
    _write(sb.root, "half.txt", "left by the interrupted checkout\n")
    again = create_sandbox(repo, "r_1", boxes)
    assert again == sb and not (again.root / "half.txt").exists()


def test_a_damaged_record_stops_creation_and_deletes_nothing(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _write(sb.root, "work.txt", "the run's work\n")
    (boxes / "r_1.json").write_text("{not json")
    with pytest.raises(KyrosError, match="damaged"):
        create_sandbox(repo, "r_1", boxes)
    assert (sb.root / "work.txt").exists()


def test_the_users_other_worktrees_are_left_alone(repo: Path, boxes: Path, tmp_path: Path) -> None:
    other = tmp_path / "usb" / "wt"
    _git(repo, "worktree", "add", "-q", "--detach", str(other))
    shutil.rmtree(tmp_path / "usb")  # its disk is unmounted for now
    sb = create_sandbox(repo, "r_1", boxes)
    remove_sandbox(sb)
    assert str(other) in _git(repo, "worktree", "list")


def test_hooks_of_the_repository_do_not_run(repo: Path, boxes: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = _write(repo, ".git/hooks/post-checkout", f"#!/bin/sh\ntouch '{marker}'\n")
    hook.chmod(0o755)
    # The hook works: a plain `git worktree add` runs it.
    _git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "plain"))
    assert marker.exists()
    marker.unlink()
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    apply_to_source(sb)
    remove_sandbox(sb)
    assert not marker.exists()


def test_workspace_in_a_subdirectory(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo / "src", "r_1", boxes)
    assert sb.subdir == "src" and sb.root == sb.top / "src" and sb.source_top == repo.resolve()
    assert (sb.root / "app.py").read_text() == APP
    _write(sb.root, "app.py", "short\n")
    _write(sb.top, "README.md", "# outside the workspace\n")
    diff = sandbox_diff(sb)
    assert "diff --git a/src/app.py b/src/app.py" in diff
    assert "README.md" not in diff  # edits outside the workspace are not the run's result
    result = apply_to_source(sb, diff)
    assert result.files == ["src/app.py"]
    assert (repo / "src/app.py").read_text() == "short\n"
    assert (repo / "README.md").read_text() == "# proj\n"


def test_untracked_workspace_subdirectory_starts_empty(repo: Path, boxes: Path) -> None:
    _write(repo, "fresh/idea.txt", "not committed\n")
    sb = create_sandbox(repo / "fresh", "r_1", boxes)
    assert sb.root.is_dir() and not any(sb.root.iterdir())
    assert "not in commit" in sb.note


# --- applying -------------------------------------------------------------------------------


def test_apply_brings_the_changes_in(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(repo, "unrelated.txt", "the user's, untouched by the run\n")
    result = apply_to_source(sb)
    assert result.files == ["data.bin", "src/app.py", "src/new/mod.py", "src/old.py"]
    assert "1 added, 2 modified, 1 deleted" in result.summary
    expected = _snapshot(sb.root)
    expected["unrelated.txt"] = b"the user's, untouched by the run\n"
    assert _snapshot(repo) == expected
    # The working tree only: the user's index is theirs.
    assert _git(repo, "diff", "--cached") == ""
    assert apply_to_source(sb, "").files == []


def test_apply_with_awkward_file_names(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    latin1 = os.fsdecode(b"caf\xe9.txt")  # not UTF-8: the diff must carry it unchanged
    _write(sb.root, 'sp ace "q".txt', "quoted\n")
    _write(sb.root, latin1, "latin-1 name\n")
    result = apply_to_source(sb, json.loads(json.dumps(sandbox_diff(sb))))
    assert sorted(result.files) == sorted(['sp ace "q".txt', latin1])
    assert (repo / 'sp ace "q".txt').read_text() == "quoted\n"
    assert (repo / latin1).read_text() == "latin-1 name\n"


def test_apply_refuses_when_a_touched_file_is_dirty(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(repo, "src/app.py", APP + "the user's edit\n")
    before = _snapshot(repo)
    with pytest.raises(Conflict) as exc:
        apply_to_source(sb)
    assert "src/app.py" in exc.value.message and "uncommitted" in exc.value.message
    assert exc.value.detail == {"files": ["src/app.py"]}
    assert _snapshot(repo) == before


def test_apply_refuses_an_untracked_file_where_the_run_adds_one(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(repo, "src/new/mod.py", "the user's own\n")
    with pytest.raises(Conflict, match=r"src/new/mod\.py"):
        apply_to_source(sb)
    assert (repo / "src/old.py").exists()


def test_apply_refuses_a_conflict_and_writes_nothing(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    # After the run started, the user commits a change to the same lines.
    _write(repo, "src/app.py", APP.replace("line 3\n", "line 3 (user)\n"))
    _commit_all(repo)
    before, status = _snapshot(repo), _status(repo)
    with pytest.raises(Conflict) as exc:
        apply_to_source(sb)
    assert "do not apply" in exc.value.message and "src/app.py" in exc.value.message
    assert "Traceback" not in exc.value.message
    # The other files of the diff, which would apply, were not written either.
    assert _snapshot(repo) == before and _status(repo) == status


def test_apply_merges_with_commits_to_other_lines(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    _write(repo, "src/app.py", APP.replace("line 18\n", "line 18 (user)\n"))
    _commit_all(repo)
    apply_to_source(sb)
    text = (repo / "src/app.py").read_text()
    assert "line three\n" in text and "line 18 (user)\n" in text


def test_apply_refuses_what_is_not_a_patch(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    with pytest.raises(InvalidInput, match="not a patch"):
        apply_to_source(sb, "this is not a diff\n")


def test_apply_refuses_paths_outside_the_workspace(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    evil = (
        "diff --git a/../escape.txt b/../escape.txt\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+out\n"
    )
    with pytest.raises(KyrosError):
        apply_to_source(sb, evil)
    assert not (repo.parent / "escape.txt").exists()


# --- copies ---------------------------------------------------------------------------------


def test_plain_directory_is_copied_diffed_and_applied(tmp_path: Path, boxes: Path) -> None:
    src = _fill(tmp_path / "plain")
    _write(src, "node_modules/pkg/index.js", "heavy\n")
    _write(src, "__pycache__/x.pyc", "cache")
    _write(src, ".kyros/state", "ours")
    os.symlink("README.md", src / "readme-link")
    sb = create_sandbox(src, "r_1", boxes)
    assert (sb.kind, sb.branch, sb.base, sb.subdir, sb.note) == ("copy", None, None, "", "")
    assert not (sb.root / "node_modules").exists() and not (sb.root / ".kyros").exists()
    assert os.readlink(sb.root / "readme-link") == "README.md"
    assert sandbox_diff(sb) == ""
    before = _snapshot(src)
    _edit(sb.root)
    _write(sb.root, "node_modules/other/index.js", "installed by the run\n")
    diff = sandbox_diff(sb)
    assert "src/new/mod.py" in diff and "deleted file mode" in diff
    assert "node_modules" not in diff
    assert _snapshot(src) == before
    result = apply_to_source(sb)
    assert result.files == ["data.bin", "src/app.py", "src/new/mod.py", "src/old.py"]
    skipped = ("node_modules/", "__pycache__/", ".kyros/")
    assert _without(_snapshot(src), skipped) == _without(_snapshot(sb.root), skipped)
    assert _snapshot(src).keys() - _without(_snapshot(src), skipped).keys() == {
        "node_modules/pkg/index.js",
        "__pycache__/x.pyc",
        ".kyros/state",
    }


def _without(files: dict[str, bytes], prefixes: tuple[str, ...]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.startswith(prefixes)}


def test_copy_apply_refuses_files_changed_since_the_copy(tmp_path: Path, boxes: Path) -> None:
    src = _fill(tmp_path / "plain")
    sb = create_sandbox(src, "r_1", boxes)
    _edit(sb.root)
    _write(src, "src/app.py", APP + "edited meanwhile\n")
    _write(src, "src/new/mod.py", "created meanwhile\n")
    before = _snapshot(src)
    with pytest.raises(Conflict) as exc:
        apply_to_source(sb)
    assert exc.value.detail == {"files": ["src/app.py", "src/new/mod.py"]}
    assert _snapshot(src) == before


def test_too_large_a_directory_is_not_copied(
    tmp_path: Path, boxes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workcopy, "MAX_COPY_FILES", 3)
    with pytest.raises(PayloadTooLarge, match="too large"):
        create_sandbox(_fill(tmp_path / "plain"), "r_1", boxes)
    assert not (boxes / "r_1").exists() and not (boxes / "r_1.json").exists()


def test_copy_create_again_keeps_edits(tmp_path: Path, boxes: Path) -> None:
    src = _fill(tmp_path / "plain")
    sb = create_sandbox(src, "r_1", boxes)
    _write(sb.root, "README.md", "# edited\n")
    assert create_sandbox(src, "r_1", boxes) == sb
    assert (sb.root / "README.md").read_text() == "# edited\n"


def test_repository_without_commits_falls_back_to_a_copy(tmp_path: Path, boxes: Path) -> None:
    src = _fill(tmp_path / "unborn")
    _git(src, "init", "-q")
    sb = create_sandbox(src, "r_1", boxes)
    assert sb.kind == "copy" and "no commit yet" in sb.note
    _edit(sb.root)
    apply_to_source(sb)
    assert (src / "src/new/mod.py").read_text() == "new = 2\n"
    assert not (src / "src/old.py").exists()
    with pytest.raises(subprocess.CalledProcessError):
        _git(src, "rev-parse", "HEAD")  # still no commit: nothing was committed for the user


def test_subdirectory_of_a_repository_without_commits(tmp_path: Path, boxes: Path) -> None:
    # From a subdirectory of a repository, `git apply` silently skips git-format paths it
    # takes to be outside it: the copy's patch must still land.
    top = tmp_path / "unborn"
    _fill(top / "pkg")
    _git(top, "init", "-q")
    sb = create_sandbox(top / "pkg", "r_1", boxes)
    assert sb.kind == "copy" and sb.source == (top / "pkg").resolve()
    _write(sb.root, "src/app.py", "rewritten\n")
    assert apply_to_source(sb).files == ["src/app.py"]
    assert (top / "pkg/src/app.py").read_text() == "rewritten\n"


# --- removing and refusing ------------------------------------------------------------------


def test_remove_worktree(repo: Path, boxes: Path) -> None:
    sb = create_sandbox(repo, "r_1", boxes)
    _edit(sb.root)
    remove_sandbox(sb)
    assert not sb.root.exists() and not (boxes / "r_1.json").exists()
    assert str(sb.root) not in _git(repo, "worktree", "list")
    assert "kyros/r_1" in _git(repo, "branch", "--list", "kyros/*")  # kept by default
    remove_sandbox(sb, delete_branch=True)  # idempotent, and now the branch goes too
    assert _git(repo, "branch", "--list", "kyros/*") == ""


def test_remove_copy(tmp_path: Path, boxes: Path) -> None:
    sb = create_sandbox(_fill(tmp_path / "plain"), "r_1", boxes)
    remove_sandbox(sb)
    remove_sandbox(sb)
    assert not sb.root.exists() and (tmp_path / "plain/README.md").exists()


def test_remove_refuses_a_directory_that_is_not_a_sandbox(tmp_path: Path) -> None:
    precious = _fill(tmp_path / "r_1")
    fake = Sandbox(root=precious, source=tmp_path / "plain", kind="copy")
    with pytest.raises(InvalidInput):
        remove_sandbox(fake)
    assert (precious / "README.md").exists()


def test_sandboxes_inside_the_workspace_are_refused(repo: Path) -> None:
    with pytest.raises(InvalidInput, match="inside"):
        create_sandbox(repo / "src", "r_1", repo / ".kyros" / "sandboxes")


@pytest.mark.parametrize("run_id", ["", "../up", "a/b", "x.lock", "-rf", "a b"])
def test_bad_run_ids_are_refused(repo: Path, boxes: Path, run_id: str) -> None:
    with pytest.raises(InvalidInput):
        create_sandbox(repo, run_id, boxes)


def test_sandbox_records_are_checked(repo: Path, boxes: Path) -> None:
    good = create_sandbox(repo, "r_1", boxes).to_json()
    for bad in (
        {},
        {**good, "kind": "vm"},
        {**good, "base": "--output=/tmp/x"},
        {**good, "root": "relative/r_1"},
        {**good, "branch": "main"},
    ):
        with pytest.raises(InvalidInput):
            Sandbox.from_json(bad)


def test_git_failures_are_kyros_errors(tmp_path: Path) -> None:
    with pytest.raises(GitError) as exc:
        run_git(tmp_path, "rev-parse", "--verify", "no-such-ref")
    assert exc.value.code == "git_failed" and "rev-parse" in exc.value.message
    assert "Traceback" not in exc.value.message
