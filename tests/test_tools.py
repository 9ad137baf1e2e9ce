"""The agent's tools on real files and real processes: reading, searching, writing, patching,
the shell, terminal-escape stripping (S13), argument checking and dispatch."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from kyros.core.tools import (
    TOOL_CLASS,
    TOOL_SPECS,
    PathPolicy,
    Toolbox,
    ToolError,
    clean_text,
    parse_arguments,
    run_command,
)
from kyros.core.tools.files import list_files, read_file, search, write_file
from kyros.core.tools.patch import apply_diff, apply_patch
from kyros.core.tools.pathpolicy import PathDenied


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def policy(root: Path) -> PathPolicy:
    return PathPolicy(root)


def no_controls(text: str) -> bool:
    return not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text)


# --- read_file ------------------------------------------------------------------------------------


def test_read_whole_file_and_ranges(root: Path, policy: PathPolicy) -> None:
    (root / "f.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    whole = read_file(policy, "f.txt")
    assert whole.splitlines()[0] == "     1| line 1"
    assert whole.splitlines()[-1] == "    10| line 10"  # no footer for the whole file
    part = read_file(policy, "f.txt", 3, 5).splitlines()
    assert part == ["     3| line 3", "     4| line 4", "     5| line 5", "[lines 3-5 of 10]"]
    assert read_file(policy, "f.txt", 9).splitlines()[:2] == ["     9| line 9", "    10| line 10"]
    assert "[lines 1-2 of 10]" in read_file(policy, "f.txt", end_line=2)
    with pytest.raises(ToolError, match="has 10 lines"):
        read_file(policy, "f.txt", 11)
    with pytest.raises(ToolError, match="before start_line"):
        read_file(policy, "f.txt", 5, 4)
    with pytest.raises(ToolError, match="1 or more"):
        read_file(policy, "f.txt", 0)


def test_read_is_cut_at_max_bytes_with_a_way_on(root: Path, policy: PathPolicy) -> None:
    (root / "big.txt").write_text("".join(f"{i:05d} " + "x" * 90 + "\n" for i in range(5000)))
    out = read_file(policy, "big.txt", max_bytes=10_000)
    assert len(out) < 10_300
    assert "read on with start_line=" in out and "the file has 5000 lines" in out
    cut = int(out.rsplit("start_line=", 1)[1].split(";")[0])
    assert read_file(policy, "big.txt", cut, cut).startswith(f"{cut:>6}| {cut - 1:05d}")


def test_read_binary_directory_missing_and_escapes(root: Path, policy: PathPolicy) -> None:
    (root / "img.bin").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0" + os.urandom(100))
    assert "binary file" in read_file(policy, "img.bin")
    (root / "d").mkdir()
    with pytest.raises(ToolError, match="is a directory"):
        read_file(policy, "d")
    with pytest.raises(ToolError, match="no such file"):
        read_file(policy, "missing.txt")
    (root / "evil.txt").write_bytes(b"a\x1b]52;c;aGVsbG8=\x07b\x1b[2J\r\nc\x9b31m\n")
    out = read_file(policy, "evil.txt")
    assert "\x1b" not in out and no_controls(out)
    assert out.splitlines() == ["     1| ab", "     2| c\ufffd31m"]  # a lone 0x9B is not UTF-8
    (root / "empty.txt").write_text("")
    assert "empty" in read_file(policy, "empty.txt")


def test_read_one_huge_line_is_bounded(root: Path, policy: PathPolicy) -> None:
    (root / "min.js").write_bytes(b"x" * (3 * 1024 * 1024) + b"\nlast\n")
    out = read_file(policy, "min.js", max_bytes=4096)
    assert len(out) < 8192 and "line cut" in out


# --- search ---------------------------------------------------------------------------------------


def test_search_text_regex_and_case(root: Path, policy: PathPolicy) -> None:
    (root / "src").mkdir()
    (root / "src/a.py").write_text("def foo():\n    return Foo.bar\n")
    (root / "src/b.py").write_text("x = 'foo(1)'\n")
    (root / "node_modules").mkdir()
    (root / "node_modules/m.js").write_text("foo\n")
    (root / "blob.bin").write_bytes(b"foo\0bar")
    (root / "huge.txt").write_text("foo\n" + "y" * (3 * 1024 * 1024))
    assert search(policy, "foo(").splitlines() == [
        "src/a.py:1: def foo():",
        "src/b.py:1: x = 'foo(1)'",
    ]
    assert search(policy, r"^\s+return \w+", regex=True) == "src/a.py:2:     return Foo.bar"
    assert "src/a.py:2:" in search(policy, "FOO.BAR", case_sensitive=False)
    assert search(policy, "foo", path="src/b.py") == "src/b.py:1: x = 'foo(1)'"
    assert "no matches" in search(policy, "nothing-like-this")
    with pytest.raises(ToolError, match=r"invalid regular expression .*missing \), unterminated"):
        search(policy, "foo(", regex=True)


def test_search_caps_results(root: Path, policy: PathPolicy) -> None:
    (root / "many.txt").write_text("hit\n" * 50)
    out = search(policy, "hit", max_results=10).splitlines()
    assert len(out) == 11 and "more than 10 matches" in out[-1]


# --- list_files -----------------------------------------------------------------------------------


def test_list_files_skips_and_truncates(root: Path, policy: PathPolicy) -> None:
    for name in ("b.txt", "a/c.txt", ".git/HEAD", "node_modules/x/y.js", "pkg/__pycache__/m.pyc"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    assert list_files(policy).splitlines() == ["a/c.txt", "b.txt"]
    assert list_files(policy, ".git") == ".git/HEAD"  # asked for explicitly
    for i in range(20):
        (root / f"n{i:02d}.txt").write_text("x")
    out = list_files(policy, max_entries=5).splitlines()
    assert len(out) == 6 and out[-1] == "… 17 more"


def test_list_files_escape_in_file_name(root: Path, policy: PathPolicy) -> None:
    (root / "evil\x1b]0;pwn\x07name\x1b[2J.txt").write_text("x")
    (root / "title\x9d0;t\x9c.txt").write_text("x")
    os.close(os.open(os.path.join(os.fsencode(root), b"bad\xff\x9b.txt"), os.O_CREAT, 0o644))
    out = list_files(policy)
    assert "\x1b" not in out and no_controls(out)
    assert "evilname.txt" in out
    out.encode("utf-8")  # undecodable names do not break the encoding


# --- write_file -----------------------------------------------------------------------------------


def test_write_creates_dirs_keeps_mode_leaves_no_temp(root: Path, policy: PathPolicy) -> None:
    assert write_file(policy, "a/b/c.txt", "héllo\n") == "wrote 7 bytes to a/b/c.txt"
    (root / "run.sh").write_text("old")
    os.chmod(root / "run.sh", 0o755)
    write_file(policy, "run.sh", "#!/bin/sh\n")
    assert (root / "run.sh").read_text() == "#!/bin/sh\n"
    assert os.stat(root / "run.sh").st_mode & 0o777 == 0o755
    leftovers = [p for p in root.rglob("*") if "kyros-tmp" in p.name]
    assert leftovers == []
    (root / "dir").mkdir()
    with pytest.raises(ToolError, match="is a directory"):
        write_file(policy, "dir", "x")
    with pytest.raises(ToolError, match="lone surrogate"):
        write_file(policy, "s.txt", "\ud800")


def test_write_is_atomic_for_a_concurrent_reader(root: Path, policy: PathPolicy) -> None:
    size = 512 * 1024
    write_file(policy, "f.txt", "a" * size)
    stop = threading.Event()
    seen: set[str] = set()

    def reader() -> None:
        while not stop.is_set():
            data = (root / "f.txt").read_text()
            seen.add("mixed" if len(set(data)) != 1 or len(data) != size else data[0])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            write_file(policy, "f.txt", ("b" if i % 2 == 0 else "a") * size)
    finally:
        stop.set()
        thread.join()
    assert "mixed" not in seen and seen
    assert [p.name for p in root.iterdir()] == ["f.txt"]


# --- apply_patch ----------------------------------------------------------------------------------


def test_apply_patch_multi_file_create_delete_offset(root: Path, policy: PathPolicy) -> None:
    (root / "a.py").write_text("".join(f"line{i}\n" for i in range(1, 21)))
    (root / "old.txt").write_text("bye\nnow\n")
    (root / "k.txt").write_text("keep\n")
    diff = """diff --git a/a.py b/a.py
index 0000000..1111111 100644
--- a/a.py
+++ b/a.py
@@ -2,3 +2,4 @@
 line2
-line3
+LINE3
+added
 line4
@@ -12,3 +13,3 @@ def f():
 line15
-line16
+LINE16
 line17
--- /dev/null
+++ b/new/b.py
@@ -0,0 +1,2 @@
+print("new")
+print("b")
--- a/old.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-bye
-now
"""
    applied = apply_diff(policy, diff)
    lines = (root / "a.py").read_text().splitlines()
    assert lines[1:5] == ["line2", "LINE3", "added", "line4"]
    assert "LINE16" in lines and "line16" not in lines  # found 3 lines below its stated place
    assert (root / "new/b.py").read_text() == 'print("new")\nprint("b")\n'
    assert not (root / "old.txt").exists()
    assert applied.summary == "patched a.py (+3 -2), created new/b.py (+2), deleted old.txt"
    assert sorted(applied.changed) == ["a.py", "new/b.py", "old.txt"]


def test_apply_patch_no_newline_and_crlf(root: Path, policy: PathPolicy) -> None:
    (root / "n.txt").write_text("one\ntwo")
    apply_patch(
        policy,
        "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,3 @@\n one\n-two\n"
        "\\ No newline at end of file\n+two\n+three\n",
    )
    assert (root / "n.txt").read_text() == "one\ntwo\nthree\n"
    (root / "w.txt").write_bytes(b"a\r\nb\r\n")
    apply_patch(policy, "--- w.txt\n+++ w.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")
    assert (root / "w.txt").read_bytes() == b"a\r\nc\r\n"


def test_apply_patch_lenient_counts(root: Path, policy: PathPolicy) -> None:
    (root / "c.txt").write_text("a\nb\nc\n")
    # Counts too large (claims 9 lines) and too small (claims 1): both still apply.
    apply_patch(policy, "--- a/c.txt\n+++ b/c.txt\n@@ -1,9 +1,9 @@\n a\n-b\n+B\n c\n")
    apply_patch(policy, "--- a/c.txt\n+++ b/c.txt\n@@ -1 +1 @@\n a\n-B\n+b2\n c\n")
    assert (root / "c.txt").read_text() == "a\nb2\nc\n"


def test_hunk_that_does_not_apply_changes_nothing(root: Path, policy: PathPolicy) -> None:
    (root / "first.py").write_text("x = 1\n")
    (root / "second.py").write_text("alpha\nbeta\ngamma\n")
    diff = (
        "--- a/first.py\n+++ b/first.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
        "--- a/second.py\n+++ b/second.py\n@@ -1,3 +1,3 @@\n alpha\n-BETA\n+delta\n gamma\n"
        "--- /dev/null\n+++ b/third.py\n@@ -0,0 +1 @@\n+new\n"
    )
    with pytest.raises(ToolError) as info:
        apply_patch(policy, diff)
    msg = info.value.message
    assert "'second.py'" in msg and "hunk 1" in msg and "@@ -1,3 +1,3 @@" in msg
    assert "expected 'BETA' but found 'beta'" in msg and "at line 2" in msg
    assert (root / "first.py").read_text() == "x = 1\n"  # all or nothing
    assert not (root / "third.py").exists()


@pytest.mark.parametrize(
    ("diff", "why"),
    [
        ("just some text\n", "no '--- a/file'"),
        ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @\n a\n", "line 3"),
        ("@@ -1 +1 @@\n-a\n+b\n", "a hunk before any"),
        ("--- a/x\n+++ b/x\n", "no hunks for 'x'"),
        ("--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+a\n", "both sides are /dev/null"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n\\ No newline at end of file\n", "no-newline marker"),
    ],
)
def test_malformed_diff(policy: PathPolicy, diff: str, why: str) -> None:
    with pytest.raises(ToolError, match="malformed diff") as info:
        apply_patch(policy, diff)
    assert why in info.value.message


def test_apply_patch_paths_go_through_the_policy(root: Path, policy: PathPolicy) -> None:
    (root / "ok.txt").write_text("a\n")
    (root / ".git").mkdir()
    diff = (
        "--- a/ok.txt\n+++ b/ok.txt\n@@ -1 +1 @@\n-a\n+b\n"
        "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+#!/bin/sh\n"
    )
    with pytest.raises(PathDenied, match="read-only"):
        apply_patch(policy, diff)
    assert (root / "ok.txt").read_text() == "a\n"
    with pytest.raises(PathDenied, match="outside"):
        apply_patch(policy, "--- /dev/null\n+++ b/../evil.txt\n@@ -0,0 +1 @@\n+x\n")
    assert not (root.parent / "evil.txt").exists()


# --- sanitize (S13) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"a\x1b]52;c;aGVsbG8=\x07b", "ab"),  # OSC 52: write the clipboard
        (b"a\x1b]52;c;aGVsbG8=\x1b\\b", "ab"),  # ... ended by ST
        ("a\x1b]0;pwn\x07b", "ab"),  # window title
        ("\x1b[2J\x1b[Hclear", "clear"),  # clear screen, cursor home
        ("\x1b[1;31mred\x1b[0m", "red"),
        ("a\x9b2Jb", "ab"),  # 8-bit CSI (U+009B)
        ("a\x9d0;t\x9cb", "ab"),  # 8-bit OSC and ST
        (b"a\xc2\x9b2Jb", "ab"),  # 8-bit CSI encoded as UTF-8
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
        ("a\x1b_apc\x1b\\b", "ab"),  # APC
        ("a\x1bcb\x1b7c\x1b(Bd", "abcd"),  # two-byte and nF escapes
        ("10%\r50%\r100%\ndone\r\n", "100%\ndone\n"),  # progress bar
        ("tail\r", "tail"),
        ("keep\ttabs\nand\x00nul\x07bel\x7fdel", "keep\ttabs\nandnulbeldel"),
        ("a\x1b]0;never ended", "a0;never ended"),  # unterminated: payload stays as text
        (b"bad \xff utf8", "bad \ufffd utf8"),
    ],
)
def test_clean_text(raw: bytes | str, want: str) -> None:
    assert clean_text(raw) == want


def test_clean_text_guarantee_and_speed() -> None:
    nasty = "".join(chr(c) for c in range(0, 0xA0)) * 3 + "\x1b[" + "\x1b]" + "\x1b"
    out = clean_text(nasty)
    assert "\x1b" not in out and no_controls(out)
    big = ("ok line " * 10 + "\x1b[31mred\x1b[0m\r\n") * 60_000  # ~6 MB
    started = time.monotonic()
    out = clean_text(big.encode())
    assert time.monotonic() - started < 5
    assert "\x1b" not in out and out.count("\n") == 60_000
    plain = "x" * 5_000_000
    assert clean_text(plain) is plain  # nothing to do is nearly free


# --- run_command ----------------------------------------------------------------------------------


async def test_command_exit_status_and_sanitized_output(policy: PathPolicy) -> None:
    result = await run_command(policy, "echo out; echo err >&2; printf '\\033]0;t\\007x'; exit 3")
    assert result.exit_code == 3 and not result.timed_out
    assert result.output == "out\nerr\nx"
    assert result.for_model() == "exit code 3\nout\nerr\nx"
    ok = await run_command(policy, "true")
    assert ok.exit_code == 0 and ok.for_model() == "exit code 0\n(no output)"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has ended; only its parent has not reaped it


async def test_timeout_kills_the_whole_process_group(policy: PathPolicy) -> None:
    started = time.monotonic()
    result = await run_command(policy, "sleep 100 & echo $!; sleep 100", timeout=1)
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code is None
    assert "timed out after 1 s" in result.for_model()
    pid = int(result.output.split()[0])
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"background child {pid} survived the timeout"


async def test_background_process_does_not_outlive_the_command(policy: PathPolicy) -> None:
    started = time.monotonic()
    result = await run_command(policy, "sleep 100 & echo $!", timeout=30)
    assert time.monotonic() - started < 10  # not held up by the child keeping stdout open
    assert result.exit_code == 0 and not result.timed_out
    pid = int(result.output.split()[0])
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


async def test_output_is_capped_and_streamed(policy: PathPolicy) -> None:
    cap = 64 * 1024
    started = time.monotonic()
    result = await run_command(policy, "yes | head -c 50000000", max_output=cap, timeout=60)
    assert time.monotonic() - started < 20
    assert result.exit_code == 0
    assert result.truncated_bytes == 50_000_000 - cap
    marker = f"\n[… {50_000_000 - cap} bytes omitted …]\n"
    assert marker in result.output
    assert len(result.output.encode()) <= cap + len(marker.encode())


async def test_command_env_is_an_allow_list(
    policy: PathPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-123")
    monkeypatch.setenv("KYROS_TOKEN", "kyros-sentinel-456")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    monkeypatch.setenv("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    result = await run_command(policy, "env", env={"EXTRA": "given"})
    assert "sentinel" not in result.output
    assert "OPENAI_API_KEY" not in result.output and "LD_PRELOAD" not in result.output
    names = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    assert "PATH" in names and "EXTRA=given" in result.output


async def test_command_cwd(root: Path, policy: PathPolicy) -> None:
    (root / "sub").mkdir()
    result = await run_command(policy, "pwd", cwd="sub")
    assert result.output.strip() == str(root / "sub")
    with pytest.raises(PathDenied):
        await run_command(policy, "pwd", cwd="..")
    with pytest.raises(PathDenied):
        await run_command(policy, "pwd", cwd="/")
    with pytest.raises(ToolError, match="NUL"):
        await run_command(policy, "echo a\0b")


# --- registry -------------------------------------------------------------------------------------


def test_specs_and_classes_agree() -> None:
    names = [spec["function"]["name"] for spec in TOOL_SPECS]
    assert sorted(names) == sorted(TOOL_CLASS)
    for spec in TOOL_SPECS:
        assert spec["type"] == "function"
        params = spec["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        assert spec["function"]["description"]
    json.dumps(TOOL_SPECS)


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("nope", "{}", "unknown tool 'nope'"),
        ("read_file", "{not json", "not valid JSON"),
        ("read_file", "[1]", "must be a JSON object"),
        ("read_file", "{}", "missing required argument 'path'"),
        ("read_file", '{"path": "a", "mode": "x"}', "unknown argument 'mode'"),
        ("read_file", '{"path": 3}', "'path' must be a string, not integer"),
        ("read_file", '{"path": "a", "start_line": true}', "must be a integer, not boolean"),
        ("read_file", '{"path": "a", "start_line": 0}', "at least 1"),
        ("search", '{"pattern": "x", "regex": "yes"}', "'regex' must be a boolean"),
        ("write_file", '{"path": "a"}', "missing required argument 'content'"),
    ],
)
def test_parse_arguments_errors(name: str, raw: str, why: str) -> None:
    with pytest.raises(ToolError) as info:
        parse_arguments(name, raw)
    assert why in info.value.message


def test_parse_arguments_ok() -> None:
    assert parse_arguments("list_files", "") == {}
    assert parse_arguments("read_file", '{"path": "a", "start_line": null}') == {"path": "a"}
    assert parse_arguments("run_command", '{"command": "ls", "timeout": 5}') == {
        "command": "ls",
        "timeout": 5,
    }


async def test_toolbox_dispatch_and_errors(root: Path, policy: PathPolicy) -> None:
    box = Toolbox(policy, command_timeout=10)
    wrote = await box.call("write_file", {"path": "d/x.txt", "content": "hi\n"})
    assert wrote.ok and wrote.changed == ["d/x.txt"]
    read = await box.call("read_file", {"path": "d/x.txt"})
    assert read.ok and read.output == "     1| hi"
    denied = await box.call("read_file", {"path": "../../etc/passwd"})
    assert not denied.ok and "outside the workspace" in denied.output
    missing = await box.call("read_file", {"path": "nope.txt"})
    assert not missing.ok and "no such file" in missing.output
    bad = await box.call("read_file", {"path": 1})
    assert not bad.ok and "must be a string" in bad.output
    unknown = await box.call("format_disk", {})
    assert not unknown.ok and "unknown tool" in unknown.output
    cmd = await box.call("run_command", {"command": "exit 2"})
    assert not cmd.ok and cmd.output.startswith("exit code 2")
    patched = await box.call(
        "apply_patch", {"patch": "--- a/d/x.txt\n+++ b/d/x.txt\n@@ -1 +1 @@\n-hi\n+ho\n"}
    )
    assert patched.ok and patched.changed == ["d/x.txt"]
    moved = await box.call("rename_file", {"src": "d/x.txt", "dst": "e/y.txt"})
    assert moved.ok and moved.changed == ["d/x.txt", "e/y.txt"]
    gone = await box.call("delete_file", {"path": "e/y.txt"})
    assert gone.ok and gone.changed == ["e/y.txt"] and not (root / "e/y.txt").exists()
    listed = await box.call("list_files", {})
    assert listed.ok
    found = await box.call("search", {"pattern": "("})
    assert found.ok and "no matches" in found.output
    bad_regex = await box.call("search", {"pattern": "[z-\x1b]", "regex": True})
    assert not bad_regex.ok and "bad character range" in bad_regex.output
    assert "\x1b" not in bad_regex.output
