"""Proving the local socket is this user's daemon before a byte goes to it (RELIABILITY S1).

A daemon socket found under ``$XDG_RUNTIME_DIR`` is only as trustworthy as the directories above
it: where another user can write (a mode-0777 runtime dir), they can put a socket of their own
in kyros's place and receive every goal, diff and token the client sends. So every connection
to a Unix socket is made by :func:`connect_unix`, which

1. before connecting, checks the socket file (a socket, owned by this user or root, writable by
   no one else) and its directory (owned by this user or root, not writable by others without
   the sticky bit) — a clear error naming the path and the owner found;
2. after connecting and before sending, asks the kernel who serves the other end
   (``SO_PEERCRED`` on Linux, ``LOCAL_PEERCRED`` — what ``getpeereid`` reads — on macOS and the
   BSDs) and refuses any other uid. This is the proof: the path checks only word the error
   earlier, and a swap between check and connect still ends here.

Both cost a few microseconds once per connection (httpx keeps connections alive), measured in
ADR 0024. Failures raise :class:`~kyros.errors.UntrustedSocket`, which is not
``DaemonUnreachable``: the client must not start a daemon of its own over someone else's socket.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyros.errors import UntrustedSocket
from kyros.paths import owner_name, shared_dir_problem, trusted_uids

if TYPE_CHECKING:
    import httpx

#: macOS/BSD ``struct xucred``: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t[16].
_XUCRED = struct.Struct("=IIh16I")
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001


def check_socket_path(path: str) -> None:
    """Refuse a socket file (or its directory) another user could have put there. A missing
    socket passes: connecting then fails as "no daemon", and a daemon started for it checks
    its directory itself."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UntrustedSocket(f"cannot check the kyros socket {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedSocket(f"{path} is not a socket; refusing to talk to it")
    if st.st_uid not in trusted_uids():
        raise UntrustedSocket(
            f"the kyros socket {path} is owned by {owner_name(st.st_uid)}, not by you, "
            f"{owner_name(os.getuid())}: "
            "another user may be impersonating the daemon; nothing was sent to it"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedSocket(
            f"the kyros socket {path} is writable by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}): kyros's own daemon binds it 0600; nothing was sent"
        )
    directory = Path(path).parent
    try:
        dir_st = os.stat(directory)
    except OSError as exc:
        raise UntrustedSocket(f"cannot check {directory}: {exc.strerror}") from None
    problem = shared_dir_problem(directory, dir_st)
    if problem:
        raise UntrustedSocket(f"refusing the kyros socket {path}: {problem}")


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process serving the other end of the connected Unix socket ``sock``."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED.size)
    return int(_XUCRED.unpack_from(raw.ljust(_XUCRED.size, b"\0"))[1])


def check_peer(sock: socket.socket, path: str) -> None:
    """Refuse (closing ``sock``) unless this user or root serves it."""
    try:
        uid = peer_uid(sock)
    except OSError as exc:
        sock.close()
        raise UntrustedSocket(
            f"cannot tell who serves the kyros socket {path} ({exc.strerror}); nothing was sent"
        ) from None
    if uid not in trusted_uids():
        sock.close()
        raise UntrustedSocket(
            f"the kyros socket {path} is served by {owner_name(uid)}, not by you, "
            f"{owner_name(os.getuid())}: another user may be impersonating the daemon; "
            "nothing was sent to it"
        )


def connect_unix(path: str, timeout: float | None = None) -> socket.socket:
    """A connected Unix socket to ``path`` whose server is proven to be this user's (blocking,
    with ``timeout``). Raises ``OSError`` when nothing listens, ``UntrustedSocket`` when someone
    else does."""
    check_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    check_peer(sock, path)
    return sock


def transport(path: str) -> httpx.HTTPTransport:
    """An httpx transport to the daemon socket at ``path`` whose every new connection goes
    through :func:`connect_unix`."""
    import httpcore
    import httpx

    class _Backend(httpcore.SyncBackend):
        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            check_socket_path(path)
            stream = super().connect_unix_socket(path, timeout, socket_options)
            try:
                check_peer(stream.get_extra_info("socket"), path)
            except UntrustedSocket:
                stream.close()
                raise
            return stream

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5)
    # Plain HTTP over a Unix socket: there is no TLS to verify, and a verifying client loads
    # the CA bundle twice (~50 ms of every command's start).
    http = httpx.HTTPTransport(uds=path, verify=False, limits=limits)
    # httpx has no parameter for httpcore's network backend: its pool is rebuilt with ours and
    # the same limits (tests/test_socket_owner.py fails if a new httpx stops using it).
    http._pool = httpcore.ConnectionPool(
        uds=path,
        network_backend=_Backend(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )
    return http
