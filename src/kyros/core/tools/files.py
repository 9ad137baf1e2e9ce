"""The file tools: list, read, search, write, delete and rename inside the workspace.

Each takes a :class:`PathPolicy` and returns text meant for the model, or raises
:class:`PathDenied` (the policy refused the path) or :class:`ToolError` (anything else the model
should be told, such as a missing file). Everything read is passed through :func:`clean_text`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

from kyros.core.tools.pathpolicy import PathDenied, PathPolicy, shown
from kyros.core.tools.sanitize import clean_text
from kyros.errors import KyrosError

__all__ = [
    "SKIP_DIRS",
    "ToolError",
    "delete_file",
    "list_files",
    "read_bytes",
    "read_file",
    "rename_file",
    "search",
    "write_file",
]

#: Directories listing and search never descend into: repository internals, dependency trees
#: and caches, which would crowd out the sources.
SKIP_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".tox"}
)
#: A NUL byte in this many leading bytes marks a file as binary (git's heuristic too).
BINARY_PROBE_BYTES = 8 * 1024
#: read_file returns at most this much text per call; the model reads on with start_line.
MAX_READ_BYTES = 256 * 1024
#: search skips files larger than this: generated bundles and data, rarely what is meant.
MAX_SEARCH_FILE_BYTES = 2 * 1024 * 1024
#: A matched line longer than this is cut in search results (minified code is one line).
MAX_MATCH_LINE_CHARS = 400
#: list_files stops walking after this many entries, so a huge tree costs bounded time.
MAX_WALK_ENTRIES = 100_000
#: read_file stops counting lines past its range beyond this offset in a file.
MAX_COUNT_BYTES = 64 * 1024 * 1024
#: apply_patch and read_bytes refuse files larger than this.
MAX_EDIT_BYTES = 16 * 1024 * 1024


class ToolError(KyrosError):
    """A tool call that failed in a way the model should be told about."""

    code = "tool_error"
    http_status = 422


def os_error(exc: OSError, path: str) -> ToolError:
    """An :class:`OSError` from a file operation on ``path`` in plain words."""
    where = shown(path)
    if isinstance(exc, FileNotFoundError):
        return ToolError(f"{where}: no such file or directory")
    if isinstance(exc, IsADirectoryError):
        return ToolError(f"{where} is a directory")
    if isinstance(exc, NotADirectoryError):
        return ToolError(f"{where}: a part of the path is not a directory")
    if isinstance(exc, FileExistsError):
        return ToolError(f"{where} already exists")
    if isinstance(exc, PermissionError):
        return ToolError(f"{where}: permission denied")
    if exc.errno == errno.ENOTEMPTY:
        return ToolError(f"{where} is a directory that is not empty")
    return ToolError(f"{where}: {exc.strerror or exc}")


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_PROBE_BYTES]


# --- reading -------------------------------------------------------------------------------------


def list_files(policy: PathPolicy, path: str = ".", max_entries: int = 500) -> str:
    """The files under ``path``, relative to the workspace root, one per line and sorted.

    Skips :data:`SKIP_DIRS` and symlinked directories; names are sanitized. Past
    ``max_entries`` the list ends with a line ``… N more``.
    """
    found: list[str] = []
    try:
        for rel in policy.walk(path, skip=SKIP_DIRS):
            found.append(rel)
            if len(found) >= MAX_WALK_ENTRIES:
                break
    except OSError as exc:
        raise os_error(exc, path) from None
    if not found:
        return f"no files under {shown(path)}"
    found.sort()
    lines = [clean_text(rel) for rel in found[:max_entries]]
    more = len(found) - max_entries
    if more > 0:
        capped = "at least " if len(found) >= MAX_WALK_ENTRIES else ""
        lines.append(f"… {capped}{more} more")
    return "\n".join(lines)


def _open_file(
    policy: PathPolicy, path: str, *, write: bool = False, dir_hint: str = ""
) -> tuple[BinaryIO, os.stat_result]:
    """``path`` opened for binary reading through the policy, with its ``fstat``; a
    directory is a :class:`ToolError` (``dir_hint`` is added to the message)."""
    try:
        fd = policy.open(path, os.O_RDONLY, write=write)
    except OSError as exc:
        raise os_error(exc, path) from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise ToolError(f"{shown(path)} is a directory{dir_hint}")
    return os.fdopen(fd, "rb"), st


def read_bytes(policy: PathPolicy, path: str, *, write: bool = False) -> bytes:
    """The whole content of regular file ``path`` (at most :data:`MAX_EDIT_BYTES`)."""
    fh, _ = _open_file(policy, path, write=write)
    with fh:
        data = fh.read(MAX_EDIT_BYTES + 1)
    if len(data) > MAX_EDIT_BYTES:
        raise ToolError(f"{shown(path)} is larger than {MAX_EDIT_BYTES // (1024 * 1024)} MiB")
    return data


def _lines(fh: BinaryIO, limit: int) -> Iterator[tuple[bytes, bool]]:
    """The lines of ``fh``, each cut to ``limit`` bytes (then flagged ``True``): a 1 GB file
    without a newline must not become one 1 GB line in memory."""
    while True:
        line = fh.readline(limit)
        if not line:
            return
        if line.endswith(b"\n") or len(line) < limit:
            yield line, False
            continue
        while True:  # skip the rest of an overlong line
            rest = fh.readline(limit)
            if not rest or rest.endswith(b"\n"):
                break
        yield line, True


def read_file(
    policy: PathPolicy,
    path: str,
    start_line: int | None = None,
    end_line: int | None = None,
    max_bytes: int = MAX_READ_BYTES,
) -> str:
    """Lines ``start_line``..``end_line`` (1-based, inclusive; default the whole file) of a
    text file, each prefixed with its number: ``    12| text``. The prefix is not part of the
    file. At most ``max_bytes`` of output; a note at the end says how to read on. A binary
    file gives a message instead of its content.
    """
    if start_line is not None and start_line < 1:
        raise ToolError("start_line must be 1 or more")
    if end_line is not None and end_line < (start_line or 1):
        raise ToolError("end_line must not be before start_line")
    first = start_line or 1
    fh, st = _open_file(policy, path, dir_hint="; use list_files to see what it holds")
    out: list[str] = []
    size = 0
    total = 0
    counted_all = True
    cut_at: int | None = None
    with fh:
        if _is_binary(fh.read(BINARY_PROBE_BYTES)):
            return f"{shown(path)} is a binary file ({st.st_size} bytes); not shown"
        fh.seek(0)
        for raw, long in _lines(fh, max(max_bytes, 1)):
            total += 1
            if total < first:
                continue
            if cut_at is not None or (end_line is not None and total > end_line):
                if fh.tell() > MAX_COUNT_BYTES:
                    counted_all = False  # counting the lines of a huge file is not worth it
                    break
                continue
            text = f"{total:>6}| {clean_text(raw).rstrip(chr(10))}"
            if long:
                text += " [… line cut]"
            size += len(text) + 1
            if size > max_bytes and out:
                cut_at = total
                continue
            out.append(text)
    if total == 0:
        return f"{shown(path)} is empty"
    if first > total:
        raise ToolError(f"{shown(path)} has {total} lines; start_line {first} is past the end")
    last = first + len(out) - 1
    of_total = f"{total}" if counted_all else f"more than {total}"
    if cut_at is not None:
        out.append(
            f"[output limit of {max_bytes // 1024} KiB reached; "
            f"read on with start_line={cut_at}; the file has {of_total} lines]"
        )
    elif first > 1 or last < total:
        out.append(f"[lines {first}-{last} of {of_total}]")
    return "\n".join(out)


def search(
    policy: PathPolicy,
    pattern: str,
    *,
    regex: bool = False,
    path: str = ".",
    max_results: int = 200,
    case_sensitive: bool = True,
) -> str:
    """Lines matching ``pattern`` (plain text, or a Python ``re`` pattern when ``regex``) in
    the text files under ``path``, as ``rel/path:line: text``. Binary files, files over
    :data:`MAX_SEARCH_FILE_BYTES` and :data:`SKIP_DIRS` are skipped."""
    if not pattern:
        raise ToolError("the search pattern is empty")
    flags = re.MULTILINE | (0 if case_sensitive else re.IGNORECASE)
    try:
        rx = re.compile(pattern if regex else re.escape(pattern), flags)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {shown(pattern)}: {exc}") from None
    except (RecursionError, OverflowError) as exc:
        raise ToolError(f"regular expression {shown(pattern)} is too complex: {exc}") from None
    results: list[str] = []
    more = False
    try:
        files = policy.walk(path, skip=SKIP_DIRS)
        for rel in files:
            text = _searchable_text(policy, rel)
            if text is None or not rx.search(text):
                continue  # one pass over the whole text first: most files do not match
            for lineno, line in enumerate(text.splitlines(), 1):
                if rx.search(line):
                    if len(results) >= max_results:
                        more = True
                        break
                    shown_line = clean_text(line).rstrip()[:MAX_MATCH_LINE_CHARS]
                    results.append(f"{clean_text(rel)}:{lineno}: {shown_line}")
            if more:
                break
    except OSError as exc:
        raise os_error(exc, path) from None
    if not results:
        return f"no matches for {shown(pattern)} under {shown(path)}"
    if more:
        results.append(f"[more than {max_results} matches; narrow the pattern or the path]")
    return "\n".join(results)


def _searchable_text(policy: PathPolicy, rel: str) -> str | None:
    """The text of ``rel`` for searching, or ``None`` for a file search passes over."""
    try:
        fh, st = _open_file(policy, rel)
    except (ToolError, PathDenied):
        return None  # a symlink out, a hard link, a FIFO, a directory, or gone meanwhile
    with fh:
        if st.st_size > MAX_SEARCH_FILE_BYTES:
            return None
        data = fh.read(MAX_SEARCH_FILE_BYTES + 1)
    if len(data) > MAX_SEARCH_FILE_BYTES or _is_binary(data):
        return None
    return data.decode("utf-8", "replace")


# --- writing -------------------------------------------------------------------------------------


def write_bytes(policy: PathPolicy, path: str, data: bytes) -> str:
    """Replace ``path`` with ``data`` atomically; returns the root-relative path written.

    The data goes to a temporary file in the target's directory (opened through the policy's
    descriptor walk), is fsynced, and is renamed over the target: a reader sees the old or the
    new content, never a mix. A symlink inside the workspace is written through to its target.
    """
    try:
        resolved = policy.resolve(path, write=True)
        parent, name = policy.open_parent(resolved, write=True, create_dirs=True)
    except OSError as exc:
        raise os_error(exc, path) from None
    tmp = f".kyros-tmp-{secrets.token_hex(8)}"
    try:
        mode = 0o644
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise ToolError(f"{shown(path)} is a directory")
            if stat.S_ISLNK(st.st_mode):  # resolved paths hold none: a loop, or a swap
                raise PathDenied(
                    f"path {shown(path)} is a symlink that does not resolve "
                    "(a symlink loop, or it changed while being checked)"
                )
            mode = stat.S_IMODE(st.st_mode)  # keep an executable bit
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
        os.fsync(parent)  # the rename itself survives a crash
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        os.close(parent)
    return resolved.relative


def write_file(policy: PathPolicy, path: str, content: str) -> str:
    """Write ``content`` (UTF-8) to ``path`` atomically, creating parent directories."""
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError("content is not valid Unicode (it holds a lone surrogate)") from None
    rel = write_bytes(policy, path, data)
    return f"wrote {len(data)} bytes to {clean_text(rel)}"


def delete_file(policy: PathPolicy, path: str) -> str:
    """Delete file ``path`` (a symlink itself, not its target) or an empty directory."""
    try:
        rel = policy.resolve(path, write=True, follow_last=False).relative
        try:
            policy.unlink(path)
        except IsADirectoryError:
            policy.rmdir(path)
        except PermissionError as exc:
            # unlink(2) of a directory is EISDIR on Linux but EPERM on some other systems.
            if exc.errno != errno.EPERM:
                raise
            policy.rmdir(path)
    except OSError as exc:
        raise os_error(exc, path) from None
    return f"deleted {clean_text(rel)}"


def rename_file(policy: PathPolicy, src: str, dst: str) -> str:
    """Rename ``src`` to ``dst``, creating parents of ``dst``; ``dst`` must not exist."""
    try:
        policy.rename(src, dst)
    except FileExistsError:
        raise ToolError(f"{shown(dst)} already exists; delete it first") from None
    except OSError as exc:
        raise os_error(exc, src) from None
    return f"renamed {clean_text(src)} to {clean_text(dst)}"
