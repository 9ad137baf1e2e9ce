"""Applying a unified diff to the workspace, all or nothing.

Accepts what ``git diff`` and ``diff -u`` print: optional ``diff --git`` headers, ``---``/``+++``
file headers (``/dev/null`` for a created or deleted file), several files and hunks, and
``\\ No newline at end of file``. Each hunk must match the file exactly (no fuzz) but may sit at
an offset from the line its header names; the nearest match wins. Every file's new content is
computed first, and nothing is written unless every hunk applies.

Hunk line counts are checked leniently, because models often miscount them: a hunk ends where
its counts say, or at the next ``@@``/file header when the counts ran past it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kyros.core.tools.files import (
    ToolError,
    delete_file,
    read_bytes,
    write_bytes,
)
from kyros.core.tools.pathpolicy import PathPolicy, shown
from kyros.core.tools.sanitize import clean_text

__all__ = ["AppliedPatch", "apply_diff", "apply_patch"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_NO_EOL = "\\"  # the "\ No newline at end of file" marker line
_DEV_NULL = "/dev/null"
#: A context or removed line quoted in an error message is cut to this length.
_QUOTE_CHARS = 120


@dataclass
class _Hunk:
    header: str
    old_start: int
    old_len: int
    new_start: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text)
    old_no_eol: bool = False
    new_no_eol: bool = False

    @property
    def old(self) -> list[str]:
        return [text for kind, text in self.lines if kind != "+"]

    @property
    def new(self) -> list[str]:
        return [text for kind, text in self.lines if kind != "-"]


@dataclass
class _FilePatch:
    old_path: str | None  # None: created
    new_path: str | None  # None: deleted
    hunks: list[_Hunk] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.new_path or self.old_path or "?"


@dataclass(frozen=True)
class AppliedPatch:
    """What :func:`apply_diff` did: a summary for the model and the paths it changed."""

    summary: str
    changed: list[str]


# --- parsing -------------------------------------------------------------------------------------


def _malformed(lineno: int, line: str, why: str) -> ToolError:
    return ToolError(f"malformed diff at line {lineno} ({shown(line[:_QUOTE_CHARS])}): {why}")


def _header_path(raw: str) -> str:
    """The path of a ``---``/``+++`` line, without a timestamp and with git's quoting undone."""
    raw = raw.split("\t", 1)[0].rstrip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # git quotes names with unusual bytes C-style, octal escapes being UTF-8 bytes.
        try:
            unescaped = raw[1:-1].encode("utf-8").decode("unicode_escape")
            raw = unescaped.encode("latin-1").decode("utf-8", "replace")
        except UnicodeError:
            raw = raw[1:-1]
    return raw


def _strip_prefixes(patch: _FilePatch) -> None:
    """Drop git's ``a/`` and ``b/`` prefixes when both sides carry them (like ``-p1``)."""
    old, new = patch.old_path, patch.new_path
    if (old is None or old.startswith("a/")) and (new is None or new.startswith("b/")):
        patch.old_path = old[2:] if old else old
        patch.new_path = new[2:] if new else new


def _is_file_header(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _is_boundary(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` starts the next hunk or file. Inside a hunk, ``--- x``/``+++ y``
    may also be a removed ``-- x`` and an added ``++ y``: a real file header is followed by
    an ``@@`` line."""
    line = lines[i]
    if line.startswith(("@@ ", "diff --git ")):
        return True
    return _is_file_header(lines, i) and i + 2 < len(lines) and lines[i + 2].startswith("@@")


def _continues(lines: list[str], i: int) -> bool:
    """Whether the hunk goes on at ``lines[i]`` after its header's counts are met (the counts
    were too small): a hunk line, or empty lines followed by one."""
    while i < len(lines) and lines[i] == "":
        i += 1
    if i >= len(lines) or _is_boundary(lines, i):
        return False
    line = lines[i]
    return line[0] in " -+" and line != "-- "  # "-- " starts a mail signature


def _parse_hunk(lines: list[str], i: int, header: re.Match[str]) -> tuple[_Hunk, int]:
    """The hunk whose ``@@`` line is ``lines[i - 1]``; returns it and the next line index."""
    old_len = 1 if header.group(2) is None else int(header.group(2))
    new_len = 1 if header.group(4) is None else int(header.group(4))
    hunk = _Hunk(header.group(0), int(header.group(1)), old_len, int(header.group(3)))
    old_left, new_left = old_len, new_len
    synthetic = 0  # trailing context lines that were empty lines in the diff
    while i < len(lines):
        line = lines[i]
        if line.startswith(_NO_EOL):
            if not hunk.lines:
                raise _malformed(i + 1, line, "a no-newline marker before any hunk line")
            kind = hunk.lines[-1][0]
            hunk.old_no_eol |= kind in " -"
            hunk.new_no_eol |= kind in " +"
            i += 1
            continue
        if _is_boundary(lines, i):
            break  # if the counts are not met yet, they were too large
        if old_left <= 0 and new_left <= 0 and not _continues(lines, i):
            break
        if line == "":
            kind, text = " ", ""  # an empty context line whose space an editor stripped
            synthetic += 1
        elif line[0] in " -+":
            kind, text = line[0], line[1:]
            synthetic = 0
        else:
            break
        hunk.lines.append((kind, text))
        old_left -= kind != "+"
        new_left -= kind != "-"
        i += 1
    if old_left > 0 or new_left > 0:
        # Counts too large: empty lines at the end were separators, not context.
        del hunk.lines[len(hunk.lines) - synthetic :]
    if not hunk.lines:
        raise _malformed(i, lines[i - 1], "a hunk without any lines")
    return hunk, i


def parse_diff(text: str) -> list[_FilePatch]:
    """The file patches in unified diff ``text``; :class:`ToolError` when it is malformed."""
    lines = text.splitlines()
    patches: list[_FilePatch] = []
    current: _FilePatch | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_file_header(lines, i):
            old = _header_path(line[4:])
            new = _header_path(lines[i + 1][4:])
            current = _FilePatch(
                None if old == _DEV_NULL else old, None if new == _DEV_NULL else new
            )
            if current.old_path is None and current.new_path is None:
                raise _malformed(i + 1, line, "both sides are /dev/null")
            _strip_prefixes(current)
            patches.append(current)
            i += 2
        elif line.startswith("@@"):
            header = _HUNK.match(line)
            if header is None:
                raise _malformed(i + 1, line, "expected '@@ -start,count +start,count @@'")
            if current is None:
                raise _malformed(i + 1, line, "a hunk before any '--- a/file' '+++ b/file' lines")
            hunk, i = _parse_hunk(lines, i + 1, header)
            current.hunks.append(hunk)
        elif line[:1] in ("+", "-") and line != "-- " and current is not None and current.hunks:
            raise _malformed(i + 1, line, "an added or removed line outside any hunk")
        else:
            i += 1  # "diff --git", "index", mode lines, commentary: not needed to apply
    if not patches:
        raise ToolError("malformed diff: no '--- a/file' and '+++ b/file' lines found")
    for patch in patches:
        if not patch.hunks:
            raise ToolError(
                f"malformed diff: no hunks for {shown(patch.name)} "
                "(renames and mode changes are not supported; use rename_file)"
            )
    return patches


# --- applying ------------------------------------------------------------------------------------


def _split(text: str) -> tuple[list[str], bool, str]:
    """Lines of ``text`` without their endings, whether it ends with one, and the ending."""
    eol = "\r\n" if text.count("\r\n") == text.count("\n") > 0 else "\n"
    ends = text.endswith("\n")
    body = text[: -len(eol)] if ends else text
    return (body.split(eol) if text else []), ends, eol


def _find(lines: list[str], old: list[str], expected: int, lowest: int) -> int | None:
    """Where ``old`` occurs in ``lines`` at or after ``lowest``, nearest ``expected`` first."""
    last = len(lines) - len(old)
    if last < lowest:
        return None
    expected = min(max(expected, lowest), last)
    for distance in range(max(expected - lowest, last - expected) + 1):
        for pos in (expected - distance, expected + distance):
            if lowest <= pos <= last and lines[pos : pos + len(old)] == old:
                return pos
    return None


def _mismatch(name: str, number: int, hunk: _Hunk, lines: list[str], at: int) -> ToolError:
    old = hunk.old
    quote = ""
    for k, want in enumerate(old):
        have = lines[at + k] if 0 <= at + k < len(lines) else None
        if have != want:
            found = "the end of the file" if have is None else shown(have[:_QUOTE_CHARS])
            quote = (
                f"; at line {at + k + 1} it expected {shown(want[:_QUOTE_CHARS])} but found {found}"
            )
            break
    return ToolError(
        f"{shown(name)}: hunk {number} ({hunk.header.strip()}) does not apply: its context "
        f"and removed lines match nowhere in the file{quote}. Nothing was changed; read the "
        "file again and make the diff against its current content."
    )


def _apply_hunks(name: str, text: str, hunks: list[_Hunk]) -> str:
    lines, ends_with_eol, eol = _split(text)
    lowest = 0
    shift = 0  # how far earlier hunks moved the lines below them
    for number, hunk in enumerate(hunks, 1):
        old, new = hunk.old, hunk.new
        stated = hunk.old_start - 1 if old else hunk.old_start  # 0-length: insert after it
        at = _find(lines, old, stated + shift, lowest)
        if at is None:
            raise _mismatch(name, number, hunk, lines, max(stated + shift, 0))
        touches_end = at + len(old) == len(lines)
        lines[at : at + len(old)] = new
        lowest = at + len(new)
        # Later hunks are stated in the old file's numbers: carry this hunk's drift and growth.
        shift = at - stated + len(new) - len(old)
        if touches_end and (hunk.old_no_eol or hunk.new_no_eol):
            ends_with_eol = not hunk.new_no_eol
    if not lines:
        return ""
    return eol.join(lines) + (eol if ends_with_eol else "")


def _new_file(hunks: list[_Hunk]) -> str:
    lines = [text for hunk in hunks for text in hunk.new]
    if not lines:
        return ""
    return "\n".join(lines) + ("" if hunks[-1].new_no_eol else "\n")


def _read_text(policy: PathPolicy, path: str) -> str | None:
    """The UTF-8 text of ``path``, or ``None`` when it does not exist."""
    if not policy.check(path, write=True).exists():
        return None
    data = read_bytes(policy, path, write=True)
    if b"\0" in data[:8192]:
        raise ToolError(f"{shown(path)} is a binary file; it cannot be patched")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{shown(path)} is not UTF-8 text; it cannot be patched") from None


def apply_diff(policy: PathPolicy, diff_text: str) -> AppliedPatch:
    """Apply unified diff ``diff_text`` to the workspace, all or nothing.

    Raises :class:`ToolError` for a malformed diff or a hunk that does not apply, and
    :class:`PathDenied` for a path the policy refuses; in each case nothing was written.
    """
    patches = parse_diff(diff_text)
    # Path -> new content (None: delete). A path patched twice sees its first result.
    pending: dict[str, str | None] = {}
    originals: dict[str, str | None] = {}
    notes: list[str] = []

    def current(path: str) -> str | None:
        if path not in pending:
            originals[path] = pending[path] = _read_text(policy, path)
        return pending[path]

    for patch in patches:
        added = sum(kind == "+" for h in patch.hunks for kind, _ in h.lines)
        removed = sum(kind == "-" for h in patch.hunks for kind, _ in h.lines)
        if patch.old_path is None:
            assert patch.new_path is not None
            if current(patch.new_path) is not None:
                raise ToolError(f"{shown(patch.new_path)} already exists; it cannot be created")
            pending[patch.new_path] = _new_file(patch.hunks)
            notes.append(f"created {clean_text(patch.new_path)} (+{added})")
            continue
        text = current(patch.old_path)
        if text is None:
            raise ToolError(f"{shown(patch.old_path)}: no such file to patch")
        result = _apply_hunks(patch.old_path, text, patch.hunks)
        if patch.new_path is None:
            if result.strip():
                raise ToolError(
                    f"{shown(patch.old_path)}: the diff deletes the file but does not remove "
                    "all of its lines; nothing was changed"
                )
            pending[patch.old_path] = None
            notes.append(f"deleted {clean_text(patch.old_path)}")
        elif patch.new_path != patch.old_path:
            if current(patch.new_path) is not None:
                raise ToolError(f"{shown(patch.new_path)} already exists; it cannot be created")
            pending[patch.old_path] = None
            pending[patch.new_path] = result
            notes.append(
                f"moved {clean_text(patch.old_path)} to {clean_text(patch.new_path)} "
                f"(+{added} -{removed})"
            )
        else:
            pending[patch.old_path] = result
            notes.append(f"patched {clean_text(patch.old_path)} (+{added} -{removed})")

    changed = [path for path, new in pending.items() if new != originals[path]]
    done: list[str] = []
    try:
        for path in changed:
            new = pending[path]
            if new is None:
                delete_file(policy, path)
            else:
                write_bytes(policy, path, new.encode("utf-8"))
            done.append(path)
    except BaseException:
        _roll_back(policy, done, originals)
        raise
    return AppliedPatch(", ".join(notes), [policy.relative(p) for p in changed])


def _roll_back(policy: PathPolicy, done: list[str], originals: dict[str, str | None]) -> None:
    """Best effort: put back the files already written when a later write failed."""
    for path in reversed(done):
        old = originals[path]
        try:
            if old is None:
                delete_file(policy, path)
            else:
                write_bytes(policy, path, old.encode("utf-8"))
        except Exception:  # noqa: S112 (the original error is the one to report)
            continue


def apply_patch(policy: PathPolicy, diff_text: str) -> str:
    """Apply unified diff ``diff_text``; returns a summary such as
    ``patched a.py (+3 -1), created b.py (+5)``. See :func:`apply_diff`."""
    return apply_diff(policy, diff_text).summary
