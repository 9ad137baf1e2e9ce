"""Workspace context gathering against real directories and a real git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kyros.core import workspace
from kyros.core.workspace import (
    MAX_FILE_BYTES,
    ContextFile,
    WorkspaceContext,
    estimate_tokens,
    gather_context,
    goal_terms,
    render_context,
)
from kyros.errors import InvalidInput

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret_notes.py"
    secret.parent.mkdir()
    secret.write_text("PARSER_SECRET = 'must never reach a prompt'\n")
    return secret


@pytest.fixture
def repo(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _write(root, "README.md", "# Demo\n\nA demo project about parsing plans.\n")
    _write(root, "pyproject.toml", '[project]\nname = "demo"\n')
    _write(root, ".gitignore", "ignored_parser.py\n*.log\n")
    _write(root, "src/demo/__init__.py", "")
    _write(root, "src/demo/parser.py", "def parse(text):\n    return text.split()\n")
    _write(root, "src/demo/render.py", "def render(tokens):\n    return ' '.join(tokens)\n")
    _write(root, "src/demo/util.py", "def helper():\n    return 1\n")
    _write(root, "ignored_parser.py", "IGNORED = True\n")
    _write(root, "debug.log", "parser log\n")
    (root / "parser_blob.dat").write_bytes(b"parser\x00\x01\x02" * 100)
    _write(root, "parser_big.py", "# parser\n" + "x = 1\n" * (MAX_FILE_BYTES // 6 + 10))
    (root / "parser_link.py").symlink_to(outside)
    _git(root, "init", "-q")
    _git(root, "add", "README.md", "pyproject.toml", ".gitignore", "src")
    _git(root, "commit", "-q", "-m", "init")
    # Untracked and not ignored: must be listed.
    _write(root, "src/demo/parser_untracked.py", "def parse_again(text):\n    return text\n")
    return root


@needs_git
def test_git_listing_respects_gitignore_and_shows_untracked(repo: Path) -> None:
    ctx = gather_context(repo, "improve the parser", 20_000)

    assert ctx.is_git
    assert ctx.root == repo.resolve()
    assert "src/demo/parser.py" in ctx.tree
    assert "src/demo/parser_untracked.py" in ctx.tree
    assert "ignored_parser.py" not in ctx.tree
    assert "debug.log" not in ctx.tree
    assert ".git/HEAD" not in ctx.tree
    assert not ctx.tree_truncated


@needs_git
def test_binary_big_and_escaping_symlink_are_skipped(repo: Path) -> None:
    ctx = gather_context(repo, "improve the parser", 200_000)
    paths = [f.path for f in ctx.files]
    rendered = render_context(ctx)

    assert "parser_link.py" not in ctx.tree
    assert "parser_link.py" not in paths
    assert "must never reach a prompt" not in rendered
    assert "parser_blob.dat" in ctx.tree  # listed, but its bytes are never shown
    assert "parser_blob.dat" not in paths
    assert "parser_big.py" in ctx.tree
    assert "parser_big.py" not in paths
    # symlink + big file + binary file
    assert ctx.skipped == 3
    assert "\x00" not in rendered


@needs_git
def test_symlink_inside_root_is_kept(repo: Path) -> None:
    (repo / "parser_alias.py").symlink_to(repo / "src" / "demo" / "parser.py")
    ctx = gather_context(repo, "improve the parser", 20_000)
    assert "parser_alias.py" in [f.path for f in ctx.files]


@needs_git
def test_path_match_ranks_first(repo: Path) -> None:
    ctx = gather_context(repo, "Make the renderer join tokens with commas in render.py", 20_000)

    assert ctx.files[0].path == "src/demo/render.py"
    scores = [f.score for f in ctx.files]
    assert scores == sorted(scores, reverse=True)  # every relevant file before any other
    by_path = {f.path: f for f in ctx.files}
    # util.py has nothing to do with the goal: it only fills budget left over, scored 0.
    assert by_path["src/demo/util.py"].score == 0


@needs_git
def test_irrelevant_files_only_fill_leftover_budget(repo: Path) -> None:
    goal = "Make the renderer join tokens with commas in render.py"
    # The smallest budget that admits the relevant file leaves nothing for the others.
    budget = next(
        b
        for b in range(50, 20_000, 25)
        if [f.path for f in gather_context(repo, goal, b).files][:1] == ["src/demo/render.py"]
    )
    tight = gather_context(repo, goal, budget)
    assert "src/demo/util.py" not in [f.path for f in tight.files]
    roomy = gather_context(repo, goal, 20_000)
    assert "src/demo/util.py" in [f.path for f in roomy.files]


@needs_git
def test_rendered_context_has_tree_readme_and_fenced_files(repo: Path) -> None:
    ctx = gather_context(repo, "improve the parser", 20_000)
    text = render_context(ctx)

    assert text.startswith("## Workspace files (git ls-files)\n")
    assert ctx.readme is not None
    assert ctx.readme.startswith("README.md\n# Demo")
    assert "## README.md\n```markdown\n# Demo" in text
    assert "## src/demo/parser.py\n```python\ndef parse(text):" in text
    assert "README.md" not in [f.path for f in ctx.files]
    assert ctx.tokens == estimate_tokens(text)


@needs_git
def test_subdirectory_of_a_repository(repo: Path) -> None:
    ctx = gather_context(repo / "src", "improve the parser", 20_000)
    assert ctx.is_git
    assert "demo/parser.py" in ctx.tree
    assert "demo/parser_untracked.py" in ctx.tree


@needs_git
def test_git_environment_cannot_redirect_the_listing(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _write(other, "elsewhere.py", "")
    _git(other, "init", "-q")
    _git(other, "add", ".")
    _git(other, "commit", "-q", "-m", "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))

    ctx = gather_context(repo, "parser", 20_000)
    assert "src/demo/parser.py" in ctx.tree
    assert "elsewhere.py" not in ctx.tree


@needs_git
def test_repository_fsmonitor_command_is_not_run(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "fsmonitor-ran"
    hook = tmp_path / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    _git(repo, "config", "core.fsmonitor", str(hook))

    ctx = gather_context(repo, "parser", 20_000)
    assert ctx.is_git
    assert not marker.exists()


@pytest.mark.parametrize("budget", [0, 1, 10, 60, 150, 400, 1_000, 3_000])
@needs_git
def test_budget_is_respected(repo: Path, budget: int) -> None:
    ctx = gather_context(repo, "improve the parser and the renderer", budget)
    text = render_context(ctx)
    assert estimate_tokens(text) == ctx.tokens
    assert ctx.tokens <= budget


def test_big_file_is_truncated_at_a_line_boundary(tmp_path: Path) -> None:
    lines = [f"def handler_{i}(request):  # handler number {i}" for i in range(2_000)]
    _write(tmp_path, "handlers.py", "\n".join(lines) + "\n")
    _write(tmp_path, "other_handlers.py", "def more(): pass\n")

    ctx = gather_context(tmp_path, "refactor the handlers", 2_000)

    assert len(ctx.files) == 1  # the partly fitting file is the last one
    cf = ctx.files[0]
    assert cf.path == "handlers.py"
    assert cf.truncated
    assert cf.content.splitlines() == lines[: len(cf.content.splitlines())]
    assert "## handlers.py (truncated)\n" in render_context(ctx)
    assert ctx.tokens <= 2_000
    # The files take the rest after the tree and README shares: most of the budget is used.
    assert ctx.tokens > 1_500


def test_tree_is_capped_and_keeps_shallow_paths(tmp_path: Path) -> None:
    for i in range(300):
        _write(tmp_path, f"pkg/sub/deep/module_{i:03}.py", "")
    _write(tmp_path, "setup.py", "")
    ctx = gather_context(tmp_path, "anything", 1_000)

    assert ctx.tree_truncated
    assert "setup.py" in ctx.tree
    assert 0 < len(ctx.tree) < 300
    tree_block = render_context(ctx).split("\n\n")[0]
    assert estimate_tokens(tree_block) <= 150  # 15% of the budget
    assert tree_block.endswith("... (more files not shown)")


def test_non_git_walk_skips_junk_and_hidden_dirs(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "plain"
    _write(root, "app/parser.py", "def parse(): pass\n")
    _write(root, "README.rst", "Plain project\n=============\n")
    _write(root, ".hidden/parser.py", "")
    _write(root, ".env", "API_KEY=parser-secret\n")
    for junk in ("node_modules", ".venv", "venv", "__pycache__", "dist", "build", ".kyros"):
        _write(root, f"{junk}/parser.py", "")
    (root / "link_out.py").symlink_to(outside)
    (root / "linked_dir").symlink_to(root / "app", target_is_directory=True)

    ctx = gather_context(root, "fix the parser", 10_000)
    text = render_context(ctx)

    assert not ctx.is_git
    assert ctx.tree == [".env", "README.rst", "app/parser.py"]
    assert [f.path for f in ctx.files] == ["app/parser.py"]
    assert ctx.readme is not None and ctx.readme.startswith("README.rst\n")
    assert "## README.rst\n```rst\n" in text
    assert "parser-secret" not in text
    assert text.startswith("## Workspace files (directory walk)\n")


def test_empty_directory(tmp_path: Path) -> None:
    ctx = gather_context(tmp_path, "start a project", 1_000)
    assert ctx == WorkspaceContext(root=tmp_path.resolve(), is_git=False)
    assert render_context(ctx) == ""


def test_goal_named_file_outranks_keyword_matches(tmp_path: Path) -> None:
    _write(tmp_path, "config/loader.py", "")
    _write(tmp_path, "config_loader_notes.py", "")
    _write(tmp_path, "settings.toml", "a = 1\n")
    ctx = gather_context(tmp_path, "The config loader should read settings.toml", 5_000)
    assert ctx.files[0].path == "settings.toml"


def test_ordering_is_deterministic(tmp_path: Path) -> None:
    for name in ("b_parser.py", "a_parser.py", "c_parser.py"):
        _write(tmp_path, f"lib/{name}", "pass\n")
    ctx = gather_context(tmp_path, "parser", 5_000)
    assert [f.path for f in ctx.files] == ["lib/a_parser.py", "lib/b_parser.py", "lib/c_parser.py"]
    assert ctx == gather_context(tmp_path, "parser", 5_000)


def test_goal_terms() -> None:
    assert goal_terms("Fix the parsePlan bug in plan_output and HTTPServer, see #12") == [
        "parse",
        "plan",
        "bug",
        "output",
        "http",
        "server",
    ]
    assert goal_terms("add tests for the policies") == ["test", "policy"]
    assert goal_terms("") == []


def test_fence_survives_backticks_in_content() -> None:
    ctx = WorkspaceContext(
        root=Path("/w"),
        is_git=False,
        files=[ContextFile("doc.md", "```py\nx\n```", False, 1.0)],
    )
    assert render_context(ctx) == "## doc.md\n````markdown\n```py\nx\n```\n````"


def test_missing_root_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        gather_context(tmp_path / "nope", "goal", 1_000)


def test_file_root_is_invalid_input(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.txt", "")
    with pytest.raises(InvalidInput, match="not a directory"):
        gather_context(path, "goal", 1_000)


def test_negative_budget_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="budget"):
        gather_context(tmp_path, "goal", -1)


def test_listing_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace.model, "MAX_LISTED_FILES", 50)
    for i in range(120):
        _write(tmp_path, f"m{i:03}.py", "")
    ctx = gather_context(tmp_path, "goal", 100_000)
    assert len(ctx.tree) == 50
    assert ctx.tree_truncated


def _populate(root: Path, count: int) -> None:
    for i in range(count):
        pkg = f"pkg{i % 30:02}"
        _write(
            root,
            f"src/{pkg}/module_{i:04}.py",
            f'"""Module {i}."""\n\n\ndef handler_{i}(request):\n    return request.user\n',
        )
    _write(root, "src/pkg07/session_store.py", "class SessionStore:\n    pass\n")


@pytest.mark.parametrize("use_git", [False, pytest.param(True, marks=needs_git)])
def test_three_thousand_files_gather_quickly(tmp_path: Path, use_git: bool) -> None:
    _populate(tmp_path, 3_000)
    if use_git:
        _git(tmp_path, "init", "-q")
        _git(tmp_path, "add", ".")
        _git(tmp_path, "commit", "-q", "-m", "many")

    goal = "Expire the session store entries of each request user"
    timings = []
    for _ in range(3):  # the best of three keeps a busy machine from failing the test
        started = time.perf_counter()
        ctx = gather_context(tmp_path, goal, 8_000)
        timings.append(time.perf_counter() - started)
    elapsed = min(timings)

    assert ctx.is_git is use_git
    assert ctx.files[0].path == "src/pkg07/session_store.py"
    assert ctx.tokens <= 8_000
    assert elapsed < 1.0, f"gathering took {elapsed:.3f}s"


def test_git_gets_no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kyros.core.workspace.listing import _git_env

    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-for-git")
    monkeypatch.setenv("KYROS_TOKEN", "kyt_sentinel_for_git")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    env = _git_env()
    assert "sk-sentinel-for-git" not in env.values() and "kyt_sentinel_for_git" not in env.values()
    assert "GIT_DIR" not in env and env["PATH"]
