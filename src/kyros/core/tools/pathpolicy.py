"""The one path policy every file tool goes through (RELIABILITY.md S8).

A path given by the model is resolved once with :func:`os.path.realpath` (following symlinks,
dangling ones included) and accepted only if the result is the workspace root or lies under it,
compared by path components so ``/ws-evil`` is not inside ``/ws``. Writes are refused under
``.git`` (hooks and config there run code) and ``.kyros`` (kyros' own config), and for the root
itself. Hard-linked files are refused outright: a second name may be a file outside.

Checking is not enough: a directory can be swapped for a symlink between the check and the use.
So every use re-walks the *resolved* relative path from a descriptor of the root, one component
at a time with ``O_NOFOLLOW``. The resolved path holds no symlinks, so a symlink that appears
later makes the walk fail (``ELOOP``/``ENOTDIR``) instead of leading outside.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kyros.errors import UsageError

__all__ = ["PROTECTED_NAMES", "PathDenied", "PathPolicy", "Resolved", "shown"]

#: Names that make a path read-only wherever they occur in it: ``.git`` (also a nested
#: repository's, and ``.git`` as a file in a worktree) and ``.kyros``. Compared case-folded,
#: because on a case-insensitive file system ``.GIT/hooks`` is ``.git/hooks``.
PROTECTED_NAMES = frozenset({".git", ".kyros"})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Longest path shown in a message; a 1 MB path must not become a 1 MB message.
_SHOWN_CHARS = 300


class PathDenied(UsageError):
    """A path the policy refuses; the message says which path and why."""

    code = "path_denied"
    http_status = 403


def shown(path: str) -> str:
    """``path`` quoted for a message: ``repr`` escapes ESC, NUL, C1 and lone surrogates."""
    if len(path) > _SHOWN_CHARS:
        return repr(path[:_SHOWN_CHARS]) + "…"
    return repr(path)


def _within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it, by whole components."""
    return os.path.commonpath([path, root]) == root


@dataclass(frozen=True)
class Resolved:
    """A checked path: its components relative to the root, none of them a symlink at check
    time. Using it re-walks these components with ``O_NOFOLLOW``."""

    given: str
    parts: tuple[str, ...]
    write: bool

    @property
    def relative(self) -> str:
        """The resolved path relative to the workspace root, ``"."`` for the root."""
        return "/".join(self.parts) or "."


class PathPolicy:
    """Confines file access to one workspace directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))
        self._root = str(self.root)
        if not self.root.is_dir():
            raise PathDenied(f"workspace {shown(self._root)} is not a directory")

    # --- checking ---------------------------------------------------------------------------

    def resolve(self, path: str, *, write: bool = False, follow_last: bool = True) -> Resolved:
        """Check ``path`` and return its resolved components, or raise :class:`PathDenied`.

        With ``follow_last=False`` a final symlink is the object itself (what delete and rename
        act on), and only its parent directory is resolved.
        """
        if not isinstance(path, str):
            raise PathDenied(f"path must be a string, not {type(path).__name__}")
        if "\0" in path:
            raise PathDenied(f"path {shown(path)} contains a NUL byte")
        if not path:
            raise PathDenied("path is empty; use '.' for the workspace root")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise PathDenied(f"path {shown(path)} is not a valid file name") from None
        if path.startswith("~"):
            # Expanding it would name the daemon user's home; taking it literally would surprise.
            raise PathDenied(
                f"path {shown(path)} starts with '~': home directories are not expanded; "
                "give a path relative to the workspace"
            )
        joined = path if os.path.isabs(path) else os.path.join(self._root, path)
        lexical = os.path.normpath(joined)
        head, tail = os.path.split(joined.rstrip("/"))
        if follow_last or tail in ("", ".", ".."):
            real = os.path.realpath(joined)
        else:
            real = os.path.join(os.path.realpath(head), tail)
        if not _within(real, self._root):
            if _within(lexical, self._root):
                raise PathDenied(f"path {shown(path)}: symlink leads outside the workspace")
            raise PathDenied(f"path {shown(path)} is outside the workspace")
        rel = os.path.relpath(real, self._root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        if write:
            self._check_writable(path, parts, lexical)
        try:
            st = os.lstat(real)
        except OSError:
            pass  # does not exist (yet): nothing more to check
        else:
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                raise PathDenied(
                    f"path {shown(path)} is a hard-linked file ({st.st_nlink} names); "
                    "another name may be outside the workspace"
                )
        return Resolved(given=path, parts=parts, write=write)

    def _check_writable(self, path: str, parts: tuple[str, ...], lexical: str) -> None:
        if not parts:
            raise PathDenied(f"path {shown(path)} is the workspace root, which is read-only")
        # Both the resolved path and the path as written: a symlink ``hooks -> .git/hooks``
        # shows in the first, ``link-to-root/.git`` in either.
        given_parts: tuple[str, ...] = ()
        if _within(lexical, self._root):
            given_parts = tuple(os.path.relpath(lexical, self._root).split(os.sep))
        for candidate in (parts, given_parts):
            for i, name in enumerate(candidate):
                if name.casefold() in PROTECTED_NAMES:
                    area = "/".join(candidate[: i + 2])
                    raise PathDenied(
                        f"path {shown(path)} is read-only: {area} "
                        f"({name} is never written by tools)"
                    )

    def check(self, path: str, *, write: bool = False) -> Path:
        """The absolute resolved path of ``path`` if the policy allows it, else
        :class:`PathDenied`. Use :meth:`open` and friends for the access itself."""
        return self.root.joinpath(*self.resolve(path, write=write).parts)

    def relative(self, path: str, *, write: bool = False) -> str:
        """``path`` checked and resolved, relative to the root (``"."`` for the root)."""
        return self.resolve(path, write=write).relative

    # --- the descriptor walk ----------------------------------------------------------------

    def _changed(self, resolved: Resolved) -> PathDenied:
        return PathDenied(
            f"path {shown(resolved.given)} changed while being checked "
            "(a symlink appeared in it, or it holds a symlink loop)"
        )

    def _step(self, dir_fd: int, name: str, resolved: Resolved, *, create: bool) -> int:
        """Open directory ``name`` below ``dir_fd`` without following a symlink; close
        ``dir_fd`` in every case. Creates it first when ``create`` and it is missing."""
        try:
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                if not create:
                    raise
                # FileExistsError: made meanwhile; the open below checks what it is.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
                return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            self._raise_if_symlink(dir_fd, name, resolved, exc)
            raise
        finally:
            os.close(dir_fd)

    def _raise_if_symlink(self, dir_fd: int, name: str, resolved: Resolved, exc: OSError) -> None:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            return
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise self._changed(resolved) from None

    def _parent_fd(self, resolved: Resolved, *, create: bool = False) -> int:
        """A descriptor of the directory holding the last component of ``resolved``."""
        fd = os.open(self._root, _DIR_FLAGS)
        for name in resolved.parts[:-1]:
            fd = self._step(fd, name, resolved, create=create)
        return fd

    def _as_resolved(self, path: str | Resolved, *, write: bool, follow_last: bool) -> Resolved:
        if isinstance(path, Resolved) and (path.write or not write):
            return path
        given = path.given if isinstance(path, Resolved) else path
        return self.resolve(given, write=write, follow_last=follow_last)

    def open(self, path: str | Resolved, flags: int, *, write: bool, mode: int = 0o644) -> int:
        """Open ``path`` (checked now, or already checked) and return the descriptor.

        Only regular files and directories are opened; a hard-linked file is refused after the
        open too, and ``O_TRUNC`` is applied only once that check has passed.
        """
        resolved = self._as_resolved(path, write=write, follow_last=True)
        truncate = bool(flags & os.O_TRUNC)
        # O_NONBLOCK: opening a FIFO for reading would otherwise block before we can refuse it.
        extra = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        flags = (flags & ~os.O_TRUNC) | extra
        if not resolved.parts:
            fd = os.open(self._root, flags, mode)
        else:
            parent = self._parent_fd(resolved)
            try:
                fd = os.open(resolved.parts[-1], flags, mode, dir_fd=parent)
            except OSError as exc:
                self._raise_if_symlink(parent, resolved.parts[-1], resolved, exc)
                raise
            finally:
                os.close(parent)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    raise PathDenied(
                        f"path {shown(resolved.given)} is a hard-linked file; "
                        "another name may be outside the workspace"
                    )
            elif not stat.S_ISDIR(st.st_mode):
                raise PathDenied(f"path {shown(resolved.given)} is not a regular file or directory")
            if truncate:
                os.ftruncate(fd, 0)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_parent(
        self,
        path: str | Resolved,
        *,
        write: bool,
        follow_last: bool = True,
        create_dirs: bool = False,
    ) -> tuple[int, str]:
        """A descriptor of the (checked) parent directory of ``path`` and the final name in it;
        the caller closes the descriptor. ``create_dirs`` makes missing parents on the way."""
        resolved = self._as_resolved(path, write=write, follow_last=follow_last)
        if not resolved.parts:
            raise PathDenied(f"path {shown(resolved.given)} is the workspace root")
        return self._parent_fd(resolved, create=create_dirs), resolved.parts[-1]

    # --- operations -------------------------------------------------------------------------

    def mkdirs(self, path: str) -> None:
        """Create directory ``path`` and any missing parents, each through the walk."""
        resolved = self.resolve(path, write=True)
        fd = os.open(self._root, _DIR_FLAGS)
        for name in resolved.parts:
            fd = self._step(fd, name, resolved, create=True)
        os.close(fd)

    def unlink(self, path: str) -> None:
        """Remove file ``path``; a symlink is removed itself, never its target."""
        parent, name = self.open_parent(path, write=True, follow_last=False)
        try:
            os.unlink(name, dir_fd=parent)
        finally:
            os.close(parent)

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``."""
        parent, name = self.open_parent(path, write=True, follow_last=False)
        try:
            os.rmdir(name, dir_fd=parent)
        finally:
            os.close(parent)

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Rename ``src`` to ``dst`` (both checked for writing before anything changes), making
        missing parents of ``dst``. An existing ``dst`` is an error unless ``replace``."""
        src_r = self.resolve(src, write=True, follow_last=False)
        dst_r = self.resolve(dst, write=True, follow_last=False)
        if not src_r.parts or not dst_r.parts:
            raise PathDenied("the workspace root cannot be renamed")
        src_fd = self._parent_fd(src_r)
        try:
            os.stat(src_r.parts[-1], dir_fd=src_fd, follow_symlinks=False)  # exists?
            dst_fd = self._parent_fd(dst_r, create=True)
            try:
                if not replace:
                    try:
                        os.stat(dst_r.parts[-1], dir_fd=dst_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        pass
                    else:
                        raise FileExistsError(errno.EEXIST, "File exists", dst)
                os.rename(src_r.parts[-1], dst_r.parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    def listdir(self, path: str = ".") -> list[str]:
        """The sorted names in directory ``path``."""
        fd = self.open(path, os.O_RDONLY | os.O_DIRECTORY, write=False)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def stat(self, path: str) -> os.stat_result:
        """``fstat`` of ``path`` opened through the policy (symlinks inside are followed)."""
        fd = self.open(path, os.O_RDONLY, write=False)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def walk(self, path: str = ".", *, skip: frozenset[str] = frozenset()) -> Iterator[str]:
        """Root-relative paths of the files (and symlinks) under ``path``, depth first.

        Directories named in ``skip`` and symlinked directories are not descended into; each
        directory is opened through the policy, so a swap mid-walk ends that branch only.
        """
        start = self.resolve(path)
        fd = self.open(start, os.O_RDONLY, write=False)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if not is_dir:
            yield start.relative
            return
        stack = [start.parts]
        while stack:
            parts = stack.pop()
            try:
                fd = self.open(
                    Resolved("/".join(parts) or ".", parts, False), os.O_RDONLY, write=False
                )
            except (OSError, PathDenied):
                continue
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs: list[tuple[str, ...]] = []
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name not in skip:
                                subdirs.append((*parts, entry.name))
                        elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                            yield "/".join((*parts, entry.name))
                    except OSError:
                        continue
                stack.extend(reversed(subdirs))
            finally:
                os.close(fd)

    def cwd(self, path: str = ".") -> Path:
        """The absolute path of ``path`` as a working directory: an existing directory inside
        the workspace (read-only areas are fine, nothing is written through it)."""
        resolved = self.resolve(path)
        try:
            fd = self.open(resolved, os.O_RDONLY | os.O_DIRECTORY, write=False)
        except FileNotFoundError:
            raise PathDenied(f"working directory {shown(path)} does not exist") from None
        except NotADirectoryError:
            raise PathDenied(f"working directory {shown(path)} is not a directory") from None
        os.close(fd)
        return self.root.joinpath(*resolved.parts)
