"""S8: path confinement of the file tools and the shell tool's working directory.

Every case runs against real files: a workspace beside an ``outside`` directory holding a
sentinel secret and a sibling ``ws-evil`` sharing the workspace's name as a prefix. A case
passes when the tool is refused and nothing outside changed, appeared or was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kyros.core.tools import PathDenied, PathPolicy, ToolError, run_command
from kyros.core.tools.files import (
    delete_file,
    list_files,
    read_file,
    rename_file,
    search,
    write_file,
)

SECRET = "TOP-SECRET-7f3a"
HL_SECRET = "HARDLINK-SECRET-91c2"


@dataclass
class Layout:
    base: Path
    root: Path
    outside: Path
    evil: Path
    policy: PathPolicy


@pytest.fixture
def ws(tmp_path: Path) -> Layout:
    base = tmp_path / "x"
    root = base / "ws"
    outside = base / "outside"
    evil = base / "ws-evil"
    for d in (root / "sub", root / ".git", root / ".kyros", outside, evil):
        d.mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "hl_secret.txt").write_text(HL_SECRET)
    (evil / "f").write_text(SECRET)
    (root / "a.txt").write_text("inside a\n")
    (root / "sub" / "b.txt").write_text("inside b\n")
    (root / ".git" / "config").write_text("[core]\n\tbare = false\n")
    (root / ".kyros" / "config.toml").write_text("model = 'x'\n")
    os.symlink("../outside", root / "link_out_dir")
    os.symlink("../outside/secret.txt", root / "link_out_file")
    os.symlink("../outside/new.txt", root / "dangling_out")
    os.symlink("sub/created.txt", root / "dangling_in")
    os.symlink(".git/hooks", root / "hooks_link")
    os.symlink("sub/b.txt", root / "in_link_file")
    os.symlink("sub", root / "in_link_dir")
    os.link(outside / "hl_secret.txt", root / "hardlink")
    return Layout(base, root, outside, evil, PathPolicy(root))


def snapshot(*dirs: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry below ``dirs`` with its content (files) or target (symlinks)."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    found[str(p)] = ("link", os.readlink(p))
                elif p.is_file():
                    found[str(p)] = ("file", p.read_bytes())
                else:
                    found[str(p)] = ("dir", b"")
    return found


# --- the operations under test --------------------------------------------------------------------


def op_read(w: Layout, p: str) -> str:
    return read_file(w.policy, p)


def op_write(w: Layout, p: str) -> str:
    return write_file(w.policy, p, "PWNED")


def op_delete(w: Layout, p: str) -> str:
    return delete_file(w.policy, p)


def op_rename_from(w: Layout, p: str) -> str:
    return rename_file(w.policy, p, "moved.txt")


def op_rename_to(w: Layout, p: str) -> str:
    return rename_file(w.policy, "a.txt", p)


def op_cwd(w: Layout, p: str) -> str:
    return asyncio.run(run_command(w.policy, "pwd; cat secret.txt", cwd=p, timeout=10)).output


def op_list(w: Layout, p: str) -> str:
    return list_files(w.policy, p)


def op_search(w: Layout, p: str) -> str:
    return search(w.policy, "SECRET", path=p)


OPS: dict[str, Callable[[Layout, str], str]] = {
    "read": op_read,
    "write": op_write,
    "delete": op_delete,
    "rename_from": op_rename_from,
    "rename_to": op_rename_to,
    "cwd": op_cwd,
    "list": op_list,
    "search": op_search,
}


def git_as_file(w: Layout) -> None:
    """A git worktree: ``.git`` is a file naming the real git dir."""
    shutil.rmtree(w.root / ".git")
    (w.root / ".git").write_text("gitdir: /elsewhere/.git/worktrees/ws\n")


def with_hooks(w: Layout) -> None:
    (w.root / ".git" / "hooks").mkdir()
    (w.root / ".git" / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\n")


# (operation, path, setup). "{out}", "{root}" and "{base}" are filled in per test.
DENIED: list[tuple[str, str, Callable[[Layout], None] | None]] = [
    ("read", "..", None),
    ("read", "../../etc/passwd", None),
    ("read", "../outside/secret.txt", None),
    ("read", "{out}/secret.txt", None),
    ("read", "/etc/passwd", None),
    ("read", "/proc/self/root/etc/passwd", None),
    ("read", "/proc/self/root{out}/secret.txt", None),
    ("read", "/proc/self/cwd/../../../../../../etc/passwd", None),
    ("read", "~", None),
    ("read", "~/x", None),
    ("read", "a.txt\0", None),
    ("read", "a.txt\0/../../outside/secret.txt", None),
    ("read", "link_out_file", None),
    ("read", "link_out_dir/secret.txt", None),
    ("read", "dangling_out", None),
    ("read", "hardlink", None),
    ("read", "../ws-evil/f", None),
    ("read", "{root}-evil/f", None),
    ("read", "sub/../../outside/secret.txt", None),
    ("write", "../outside/new.txt", None),
    ("write", "{out}/new.txt", None),
    ("write", "/proc/self/root{out}/new.txt", None),
    ("write", "link_out_dir/new.txt", None),
    ("write", "link_out_file", None),
    ("write", "dangling_out", None),
    ("write", "hardlink", None),
    ("write", "../ws-evil/f", None),
    ("write", "~/x", None),
    ("write", ".", None),
    ("write", "{root}", None),
    ("write", ".git/hooks/pre-commit", None),
    ("write", ".git/hooks/pre-commit", with_hooks),
    ("write", ".git/config", None),
    ("write", ".git", git_as_file),
    ("write", ".GIT/config", None),
    ("write", "sub/.git/hooks/post-checkout", None),
    ("write", "sub/../.git/config", None),
    ("write", ".kyros/config.toml", None),
    ("write", "hooks_link/pre-commit", None),
    ("write", "in_link_dir/../.git/config", None),
    ("delete", "../outside/secret.txt", None),
    ("delete", "{out}/secret.txt", None),
    ("delete", "link_out_dir/secret.txt", None),
    ("delete", "hardlink", None),
    ("delete", ".git/config", None),
    ("delete", ".git", git_as_file),
    ("delete", ".kyros/config.toml", None),
    ("delete", ".", None),
    ("rename_from", "../outside/secret.txt", None),
    ("rename_from", "{out}/secret.txt", None),
    ("rename_from", "link_out_dir/secret.txt", None),
    ("rename_from", ".git/config", None),
    ("rename_from", "hardlink", None),
    ("rename_to", ".git/hooks/pre-commit", None),
    ("rename_to", ".git/hooks/pre-commit", with_hooks),
    ("rename_to", "hooks_link/pre-commit", None),
    ("rename_to", "link_out_dir/moved.txt", None),
    ("rename_to", "../outside/moved.txt", None),
    ("rename_to", "../ws-evil/moved.txt", None),
    ("rename_to", ".kyros/x.toml", None),
    ("cwd", "..", None),
    ("cwd", "{out}", None),
    ("cwd", "link_out_dir", None),
    ("cwd", "/proc/self/root/", None),
    ("cwd", "~", None),
    ("cwd", "../ws-evil", None),
    ("cwd", "a.txt", None),
    ("list", "..", None),
    ("list", "link_out_dir", None),
    ("search", "../outside", None),
    ("search", "link_out_dir", None),
    ("search", "link_out_file", None),
]


def fill(w: Layout, path: str) -> str:
    return path.format(out=w.outside, root=w.root, base=w.base)


@pytest.mark.parametrize(
    ("op", "path", "setup"),
    DENIED,
    ids=[
        f"{op}:{path.replace(chr(0), 'NUL')}" + (f"+{s.__name__}" if s else "")
        for op, path, s in DENIED
    ],
)
def test_denied_and_nothing_escapes(
    ws: Layout, op: str, path: str, setup: Callable[[Layout], None] | None
) -> None:
    if setup is not None:
        setup(ws)
    before_out = snapshot(ws.outside, ws.evil)
    before_git = (
        snapshot(ws.root / ".git", ws.root / ".kyros") if (ws.root / ".git").is_dir() else {}
    )
    with pytest.raises(PathDenied) as info:
        OPS[op](ws, fill(ws, path))
    message = info.value.message
    assert SECRET not in message and HL_SECRET not in message
    assert "\x1b" not in message and "\0" not in message
    assert snapshot(ws.outside, ws.evil) == before_out  # nothing outside changed or appeared
    if before_git:
        assert snapshot(ws.root / ".git", ws.root / ".kyros") == before_git
    assert not (ws.outside / "new.txt").exists()
    assert not (ws.root / "moved.txt").exists()
    if (ws.root / ".git").is_dir():
        assert not (ws.root / ".git" / "hooks" / "pre-commit").exists()


def test_denial_messages_say_why(ws: Layout) -> None:
    cases = {
        "../outside/secret.txt": "outside the workspace",
        "link_out_file": "symlink leads outside the workspace",
        "hardlink": "hard-linked",
        "a\0b": "NUL byte",
        "~/x": "'~'",
    }
    for path, why in cases.items():
        with pytest.raises(PathDenied, match=why):
            ws.policy.check(path)
    with pytest.raises(PathDenied, match=r"read-only: \.git/hooks"):
        ws.policy.check(".git/hooks/pre-commit", write=True)
    with pytest.raises(PathDenied, match=r"read-only: \.git/hooks"):
        ws.policy.check("hooks_link/pre-commit", write=True)
    assert PathDenied.code == "path_denied" and PathDenied.http_status == 403


def test_sibling_prefix_is_compared_by_components(ws: Layout) -> None:
    assert str(ws.evil).startswith(str(ws.root))  # the trap a string prefix check falls into
    with pytest.raises(PathDenied):
        ws.policy.check(str(ws.evil / "f"))


# --- what must keep working -----------------------------------------------------------------------


def test_in_workspace_symlinks_read_and_write(ws: Layout) -> None:
    p = ws.policy
    assert "inside b" in read_file(p, "in_link_file")
    assert "inside b" in read_file(p, "in_link_dir/b.txt")
    write_file(p, "in_link_file", "changed through link\n")
    assert (ws.root / "sub" / "b.txt").read_text() == "changed through link\n"
    assert (ws.root / "in_link_file").is_symlink()  # written through, not replaced
    write_file(p, "in_link_dir/new.txt", "n\n")
    assert (ws.root / "sub" / "new.txt").read_text() == "n\n"
    write_file(p, "dangling_in", "made\n")  # a dangling link whose target is inside
    assert (ws.root / "sub" / "created.txt").read_text() == "made\n"


def test_legitimate_paths(ws: Layout) -> None:
    p = ws.policy
    write_file(p, "x/y/z/new.txt", "deep\n")
    assert (ws.root / "x/y/z/new.txt").read_text() == "deep\n"
    assert "bare = false" in read_file(p, ".git/config")  # reading .git is fine
    assert "inside a" in read_file(p, str(ws.root / "a.txt"))
    assert "inside a" in read_file(p, "sub/../a.txt")
    assert "inside a" in read_file(p, f"/proc/self/root{ws.root}/a.txt")
    rename_file(p, "a.txt", "deep/er/a2.txt")
    assert (ws.root / "deep/er/a2.txt").read_text() == "inside a\n"
    delete_file(p, "sub/b.txt")
    assert not (ws.root / "sub/b.txt").exists()
    assert p.cwd("sub") == ws.root / "sub"
    assert p.cwd(".git") == ws.root / ".git"  # a read-only area is a fine working directory
    out = asyncio.run(run_command(p, "pwd", cwd="in_link_dir", timeout=10))
    assert out.output.strip() == str(ws.root / "sub")


def test_symlink_loop_is_refused(ws: Layout) -> None:
    os.symlink("loop", ws.root / "loop")
    with pytest.raises((PathDenied, ToolError)):
        read_file(ws.policy, "loop")
    with pytest.raises(PathDenied):
        write_file(ws.policy, "loop", "x")
    with pytest.raises(PathDenied):
        write_file(ws.policy, "loop/f", "x")
    assert (ws.root / "loop").is_symlink()


def test_links_out_are_removed_or_moved_themselves(ws: Layout) -> None:
    """Deleting or renaming a symlink acts on the link; its target outside is untouched."""
    before = snapshot(ws.outside)
    delete_file(ws.policy, "dangling_out")
    delete_file(ws.policy, "link_out_file")
    rename_file(ws.policy, "link_out_dir", "moved_link")
    assert (ws.root / "moved_link").is_symlink()
    assert snapshot(ws.outside) == before


# --- check-then-use races -------------------------------------------------------------------------


def test_dir_swapped_for_symlink_after_check(ws: Layout) -> None:
    (ws.root / "d").mkdir()
    checked = ws.policy.resolve("d/f.txt", write=True)
    ws.policy.check("d/f.txt", write=True)
    os.rename(ws.root / "d", ws.root / "d_real")
    os.symlink(ws.outside, ws.root / "d")
    with pytest.raises(PathDenied, match="changed while being checked"):
        ws.policy.open(checked, os.O_WRONLY | os.O_CREAT, write=True)
    with pytest.raises(PathDenied, match="changed while being checked"):
        ws.policy.open_parent(checked, write=True, create_dirs=True)
    with pytest.raises(PathDenied):  # a fresh check sees the symlink
        ws.policy.open("d/f.txt", os.O_WRONLY | os.O_CREAT, write=True)
    assert not (ws.outside / "f.txt").exists()


def test_file_swapped_for_symlink_or_hardlink_after_check(ws: Layout) -> None:
    (ws.root / "f.txt").write_text("mine\n")
    checked = ws.policy.resolve("f.txt", write=True)
    os.unlink(ws.root / "f.txt")
    os.symlink(ws.outside / "secret.txt", ws.root / "f.txt")
    with pytest.raises(PathDenied, match="changed while being checked"):
        ws.policy.open(checked, os.O_RDONLY, write=False)
    os.unlink(ws.root / "f.txt")
    os.link(ws.outside / "hl_secret.txt", ws.root / "f.txt")
    with pytest.raises(PathDenied, match="hard-linked"):
        ws.policy.open(checked, os.O_WRONLY | os.O_TRUNC, write=True)
    assert (ws.outside / "hl_secret.txt").read_text() == HL_SECRET  # not truncated
    assert (ws.outside / "secret.txt").read_text() == SECRET


def test_swap_stress_never_writes_outside(ws: Layout) -> None:
    """A thread flips ``d`` between a real directory and a symlink out while files are
    written into it: whatever interleaving happens, nothing lands outside."""
    d, stash = ws.root / "d", ws.root / "d_stash"
    d.mkdir()
    stop = threading.Event()
    flips = 0

    def flipper() -> None:
        nonlocal flips
        while flips < 1000 and not stop.is_set():
            try:
                os.rename(d, stash)
            except OSError:
                continue
            with contextlib.suppress(FileExistsError):  # the writer made ``d`` again meanwhile
                os.symlink(ws.outside, d)
            time.sleep(0)
            if d.is_symlink():
                os.unlink(d)
            else:
                shutil.rmtree(d, ignore_errors=True)
            while True:
                try:
                    os.rename(stash, d)
                    break
                except OSError:  # the writer recreated ``d`` with a file in it
                    shutil.rmtree(d, ignore_errors=True)
            flips += 1

    thread = threading.Thread(target=flipper)
    thread.start()
    writes = denied = 0
    deadline = time.monotonic() + 60
    try:
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                write_file(ws.policy, f"d/f{writes % 7}.txt", "PWNED")
                writes += 1
            except (PathDenied, ToolError):
                denied += 1
    finally:
        stop.set()
        thread.join()
    assert flips >= 1000
    assert writes > 0 and denied > 0, (writes, denied)  # both outcomes were exercised
    assert sorted(p.name for p in ws.outside.iterdir()) == ["hl_secret.txt", "secret.txt"]
    assert (ws.outside / "secret.txt").read_text() == SECRET
