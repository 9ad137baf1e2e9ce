"""`kyros daemon serve`: bind the sockets ourselves, hold the instance lock, run the core + API.

uvicorn would chmod a Unix socket to 0666 and leave it behind (STACK-NOTES), so kyros binds it
with umask 0o177 inside a 0700 directory it has checked (RELIABILITY S1), under an ``flock`` that
makes a second daemon fail loudly instead of stealing the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import uvicorn

from kyros import API_VERSION, __version__, tokens
from kyros.core.ai.keys import credentials_for
from kyros.core.app import Core
from kyros.daemon import logs
from kyros.daemon.app import HotReads, create_app
from kyros.daemon.guard import LOCAL_HOSTS, Guard, allowed_names
from kyros.errors import Conflict, UsageError
from kyros.hosts import MalformedHost, canonical_name
from kyros.paths import UnsafeDirectory, ensure_runtime_dir, write_private_file
from kyros.settings import Loaded

log = logging.getLogger("kyros.daemon")

GIL_SWITCH_SECONDS = 0.0005


@dataclass(frozen=True)
class TcpOptions:
    host: str
    port: int
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_insecure: bool = False


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon stops its servers and core in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def instance_lock(loaded: Loaded) -> Iterator[IO[str]]:
    paths = loaded.paths
    try:
        ensure_runtime_dir(paths.runtime_dir)
    except UnsafeDirectory as exc:
        raise UsageError(f"refusing to start: {exc}") from None
    handle = paths.lock_file.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid = "?"
        with contextlib.suppress(OSError, ValueError):
            pid = json.loads(paths.status_file.read_text()).get("pid", "?")
        raise Conflict(
            f"a kyros daemon is already running (pid {pid}) on {paths.socket}; "
            "stop it with `kyros daemon stop`"
        ) from None
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):
            paths.status_file.unlink()
        with contextlib.suppress(OSError):
            paths.socket.unlink()
        handle.close()


def bind_unix(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # stale: we hold the instance lock, so no live daemon owns it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def bind_tcp(opts: TcpOptions) -> socket.socket:
    family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listener says
    # so; without it every response pays Nagle + delayed ACK (~40 ms) between headers and body.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((opts.host, opts.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def check_tcp(opts: TcpOptions) -> None:
    """RELIABILITY S2: off loopback, TCP needs TLS unless the user says otherwise explicitly."""
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not _is_loopback(opts.host) and opts.tls_cert is None and not opts.allow_insecure:
        raise UsageError(
            f"refusing to listen on non-loopback {opts.host} without TLS: tokens would cross the "
            "network in clear. Give --tls-cert/--tls-key, or --insecure-no-tls if a tunnel "
            "already encrypts it."
        )


def tcp_hosts(loaded: Loaded, tcp: TcpOptions) -> frozenset[str]:
    """The names a TCP listener answers to: localhost and loopback, its listen address, this
    machine's name, and the ``allowed_hosts`` setting (``--allow-host``)."""
    names = {*LOCAL_HOSTS, tcp.host, *loaded.settings.allowed_hosts}
    with contextlib.suppress(MalformedHost):  # a machine name no client could send as a Host
        names.add(canonical_name(socket.gethostname()))
    return allowed_names(names)


def serve(loaded: Loaded, tcp: TcpOptions | None = None, *, autostarted: bool = False) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT. ``autostarted``: a client
    started it in the background, and may restart it while it is idle (ADR 0017)."""
    if tcp is not None:
        check_tcp(tcp)
    # Stored keys too (keyring, credentials file): they must never reach the log either.
    secrets = list(credentials_for(loaded).provider_keys().values())
    if loaded.settings.token:
        secrets.append(loaded.settings.token)
    with instance_lock(loaded):
        paths = loaded.paths
        unix_sock = bind_unix(paths.socket)
        tcp_sock = bind_tcp(tcp) if tcp is not None else None
        created = tokens.ensure(paths) if tcp is not None else None
        local_token = tokens.read_local_token(paths)
        if local_token:
            secrets.append(local_token)
        logs.configure(loaded.settings.log_level, secrets)
        if created:
            log.info("created a daemon token; print it with `kyros daemon token`")
        write_private_file(
            paths.status_file,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "socket": str(paths.socket),
                    "version": __version__,
                    "api_version": API_VERSION,
                    "tcp": f"{tcp.host}:{tcp.port}" if tcp else None,
                    "started_at": time.time(),
                    "autostarted": autostarted,
                    "role": loaded.settings.node_role,
                }
            ),
        )
        # SQLite and socket calls release the GIL; with the default 5 ms switch interval the
        # event loop then often waits that long to get it back. Measured on GET /v1/runs/{id}
        # (wrk, 32 connections, 2 cores): 790 req/s at 5 ms, 1,060 at 0.5 ms. (uvloop was
        # tried too: no gain on /healthz and half the rate on this route.)
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        asyncio.run(_run(loaded, unix_sock, tcp_sock, tcp, autostarted))
    # Everything is flushed and closed; skip the interpreter's teardown of litellm's thousands
    # of modules (~2 s) so `kyros daemon stop` returns promptly.
    logging.shutdown()
    os._exit(0)


async def _run(
    loaded: Loaded,
    unix_sock: socket.socket,
    tcp_sock: socket.socket | None,
    tcp: TcpOptions | None,
    autostarted: bool = False,
) -> None:
    scheme = "https" if tcp is not None and tcp.tls_cert else "http"
    core = Core(
        loaded,
        autostarted=autostarted,
        node_url=f"{scheme}://{tcp.host}:{tcp.port}" if tcp is not None else None,
    )
    await core.start()
    app = create_app(core)
    asgi = HotReads(app)
    common: dict[str, Any] = {
        "lifespan": "off",
        "log_config": None,
        "ws": "auto",
        "http": _http_impl(),
        "timeout_graceful_shutdown": 5,
        "access_log": False,
        # No proxy sits in front of the daemon: X-Forwarded-* headers are not trusted, not even
        # parsed (uvicorn would let any local client set the request's client and scheme).
        "proxy_headers": False,
    }
    servers = [_Server(uvicorn.Config(Guard(asgi, verify=None), **common))]
    sockets = [[unix_sock]]
    if tcp_sock is not None and tcp is not None:
        verifier = tokens.TokenVerifier(loaded.paths.token_hash_file)
        hosts = tcp_hosts(loaded, tcp)
        app.state.tcp = {"listen": f"{tcp.host}:{tcp.port}", "allowed_hosts": sorted(hosts)}
        servers.append(
            _Server(
                uvicorn.Config(
                    Guard(asgi, verify=verifier.verify, allowed_hosts=hosts),
                    **common,
                    ssl_certfile=tcp.tls_cert,
                    ssl_keyfile=tcp.tls_key,
                )
            )
        )
        sockets.append([tcp_sock])

    loop = asyncio.get_running_loop()

    def _stop() -> None:
        app.state.shutting_down = True
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop)
    log.info(
        "kyros daemon %s ready on %s%s (pid %s, store %s, node %s, role %s)",
        __version__,
        loaded.paths.socket,
        f" and {tcp.host}:{tcp.port}" if tcp else "",
        os.getpid(),
        core.store.dialect,
        core.nodes.node_id,
        core.nodes.role,
    )
    try:
        await asyncio.gather(
            *(s.serve(sockets=socks) for s, socks in zip(servers, sockets, strict=True))
        )
    finally:
        log.info("stopping: finishing running jobs")
        await core.stop()
        log.info("stopped")
