"""RELIABILITY S1-S5 and S7 against real `kyros daemon serve` processes.

One TCP daemon (module scope) serves the Origin/Host/token matrices; the daemons that must be
killed, refused or checked per store backend get their own directories. Every "refused to start"
case is launched at once (the import of the daemon dominates their cost) and checked per test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from kyros import paths as kpaths
from kyros import tokens
from tests.conftest import (
    BACKENDS,
    Daemon,
    database,
    kyros_env,
    run_cli,
    start_daemon,
    xdg_dirs,
)

pytestmark = pytest.mark.e2e

FOREIGN_ORIGINS = ("https://evil.example", "null", "file://")
RUN_BODY_FIELDS = {"goal": "Add a README section", "model": "demo"}


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sqlite_env(xdg: dict[str, str]) -> dict[str, str]:
    return kyros_env(xdg, KYROS_DATABASE_URL=f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/k.db")


def error_code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or set(body) != {"error"}:
        return None
    err = body["error"]
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not err["message"]:
        return None
    code = err.get("code")
    return code if isinstance(code, str) else None


def refused(r: httpx.Response, status: int, code: str) -> bool:
    return (
        r.status_code == status
        and r.headers.get("content-type", "").startswith("application/json")
        and error_code(r) == code
    )


def _example(schema: dict[str, Any], components: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        schema = components[ref.rsplit("/", 1)[-1]]
    enum = schema.get("enum") or schema.get("examples")  # a run kind: "plan"
    return str(enum[0]) if enum else "r_x"


def api_routes(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, concrete path) for every operation in the OpenAPI, path params filled in."""
    components = openapi.get("components", {}).get("schemas", {})
    routes = []
    for template, ops in openapi["paths"].items():
        for method, op in ops.items():
            params = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "path"}

            def fill(m: re.Match[str], params: dict[str, Any] = params) -> str:
                param = params.get(m.group(1), {})
                return _example(param.get("schema", {}), components)

            routes.append((method.upper(), re.sub(r"\{([^}]+)\}", fill, template)))
    return routes


def send(client: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "POST":
        kwargs["json"] = {}
    # GET /v1/runs/r_x/events is a 404 (no such run), so none of these requests streams.
    return client.request(method, path, **kwargs)


@dataclass
class TcpDaemon:
    daemon: Daemon
    port: int
    paths: kpaths.Paths
    routes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def token(self) -> str:
        token = tokens.read_local_token(self.paths)
        assert token, "the daemon created no token at its first TCP start"
        return token

    def tcp(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def uds(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.daemon.socket)),
            base_url="http://kyros",
            timeout=10,
        )

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def start_tcp(env: dict[str, str]) -> TcpDaemon:
    port = free_port()
    d = start_daemon(env, "--listen", f"127.0.0.1:{port}")
    td = TcpDaemon(daemon=d, port=port, paths=kpaths.resolve(env))
    try:
        with td.tcp() as c:
            r = c.get("/openapi.json", headers=td.auth())
        assert r.status_code == 200, r.text
        td.routes = [*api_routes(r.json()), ("GET", "/openapi.json")]
    except BaseException:
        d.stop()
        raise
    return td


@pytest.fixture(scope="module")
def tcp_daemon() -> Iterator[TcpDaemon]:
    """One daemon on a Unix socket and loopback TCP, SQLite store."""
    with xdg_dirs() as xdg:
        td = start_tcp(sqlite_env(xdg))
        try:
            yield td
        finally:
            td.daemon.stop()


def test_openapi_lists_the_run_routes(tcp_daemon: TcpDaemon) -> None:
    # The matrices below iterate over what the daemon itself publishes; make sure that list
    # is the real one and not, say, empty.
    expected = {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/v1/runs/plan"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/r_x"),
        ("POST", "/v1/runs/r_x/cancel"),
        ("GET", "/v1/runs/r_x/events"),
        ("GET", "/openapi.json"),
    }
    assert expected <= set(tcp_daemon.routes)


# --------------------------------------------------------------------------------------------
# S3 "before any handler runs" and S5 "no side effect", on each store backend. First in the
# module: the PostgreSQL daemon then has time to finish warming up before it is stopped.


def _count_runs(c: httpx.Client, auth: dict[str, str]) -> int:
    r = c.get("/v1/runs", headers=auth)
    assert r.status_code == 200, r.text
    return len(r.json()["runs"])


@pytest.fixture(scope="module", params=BACKENDS)
def store_daemon(request: pytest.FixtureRequest) -> Iterator[TcpDaemon]:
    """A TCP daemon per store backend; SQLite reuses the module's daemon."""
    if request.param == "sqlite":
        yield request.getfixturevalue("tcp_daemon")
        return
    with xdg_dirs() as xdg, database(request.param, xdg) as url:
        td = start_tcp(kyros_env(xdg, KYROS_DATABASE_URL=url))
        try:
            yield td
        finally:
            td.daemon.stop()


def test_refused_requests_have_no_side_effect(store_daemon: TcpDaemon, tmp_path: Path) -> None:
    td, auth = store_daemon, store_daemon.auth()
    body = {**RUN_BODY_FIELDS, "workspace": str(tmp_path)}
    raw = json.dumps(body).encode()
    evil = {"Origin": "https://evil.example"}
    post_routes = [path for method, path in td.routes if method == "POST"]
    assert "/v1/runs/plan" in post_routes
    with td.tcp() as c, td.uds() as u:
        assert _count_runs(c, auth) == 0
        # S3: a valid token and a valid body, but a foreign Origin.
        for client, headers in ((c, {**auth, **evil}), (u, evil)):
            r = client.post("/v1/runs/plan", json=body, headers=headers)
            assert refused(r, 403, "forbidden_origin"), r.text
        # S5: the "simple" request a browser sends cross-origin without a preflight, to every
        # POST route.
        for path in post_routes:
            for client, headers in ((c, {**auth, **evil}), (c, evil), (u, evil)):
                plain = {**headers, "Content-Type": "text/plain"}
                r = client.post(path, content=raw, headers=plain)
                assert refused(r, 403, "forbidden_origin"), f"{path}: {r.text}"
        # Without an Origin, a text/plain body is still not accepted as JSON.
        for client, headers in ((c, auth), (u, {})):
            r = client.post(
                "/v1/runs/plan", content=raw, headers={**headers, "Content-Type": "text/plain"}
            )
            assert r.status_code == 422 and error_code(r) == "invalid_input", r.text
        assert _count_runs(c, auth) == 0

        # The same body from a real client creates a run: the refusals were not about the body.
        created = c.post("/v1/runs/plan", json=body, headers=auth)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        try:
            # A cross-origin cancel of that real run changes nothing.
            for client, headers in ((c, {**auth, **evil}), (u, evil)):
                for content_type in ("text/plain", "application/json"):
                    r = client.post(
                        f"/v1/runs/{run_id}/cancel",
                        content=b"{}",
                        headers={**headers, "Content-Type": content_type},
                    )
                    assert refused(r, 403, "forbidden_origin"), r.text
            run = c.get(f"/v1/runs/{run_id}", headers=auth).json()
            assert run["status"] != "cancelled"
            assert _count_runs(c, auth) == 1
        finally:
            c.post(f"/v1/runs/{run_id}/cancel", headers=auth)  # the daemon stops sooner


# --------------------------------------------------------------------------------------------
# S1: the Unix socket and its directory


def test_socket_is_0600_in_a_0700_dir_owned_by_us(tcp_daemon: TcpDaemon) -> None:
    sock = tcp_daemon.daemon.socket
    st = sock.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    dst = sock.parent.lstat()
    assert stat.S_ISDIR(dst.st_mode)
    assert stat.S_IMODE(dst.st_mode) == 0o700
    assert dst.st_uid == os.getuid()
    status = tcp_daemon.paths.status_file.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600


class TestPublicListenWithInsecureNoTls:
    """S2's explicit opt-out; the same daemon is then killed to leave a stale socket (S1)."""

    @pytest.fixture(scope="class")
    def public(self) -> Iterator[TcpDaemon]:
        with xdg_dirs() as xdg:
            env = {**sqlite_env(xdg), "KYROS_ALLOWED_HOSTS": "CI.Example."}
            port = free_port()
            d = start_daemon(
                env, "--listen", f"0.0.0.0:{port}", "--insecure-no-tls", "--allow-host", "127.0.0.2"
            )
            try:
                yield TcpDaemon(daemon=d, port=port, paths=kpaths.resolve(env))
            finally:
                d.stop()

    def test_it_starts_and_still_needs_the_token(self, public: TcpDaemon) -> None:
        with public.tcp() as c:
            assert refused(c.get("/healthz"), 401, "unauthorized")
            assert refused(
                c.get("/healthz", headers=public.auth(tokens.generate())), 401, "unauthorized"
            )
            r = c.get("/healthz", headers=public.auth())
            assert r.status_code == 200 and r.json()["pid"] == public.daemon.proc.pid
            r = c.get("/healthz", headers={**public.auth(), "Origin": "https://evil.example"})
            assert refused(r, 403, "forbidden_origin")

    def test_an_address_is_served_only_when_allowed(self, public: TcpDaemon) -> None:
        def get(ip: str, host: str | None = None) -> httpx.Response:
            headers = {**public.auth(), **({"Host": host} if host else {})}
            with httpx.Client(base_url=f"http://{ip}:{public.port}", timeout=10) as c:
                return c.get("/v1/runs", headers=headers)

        assert get("127.0.0.2").status_code == 200  # --allow-host
        assert get("127.0.0.1", f"ci.example:{public.port}").status_code == 200  # the setting
        assert get("127.0.0.1", f"CI.example.:{public.port}").status_code == 200
        assert refused(get("127.0.0.3"), 403, "forbidden_host")  # listed nowhere
        assert refused(get("127.0.0.1", "127.0.0.22"), 403, "forbidden_host")
        assert refused(get("127.0.0.1", "ci.example.evil"), 403, "forbidden_host")

    def test_status_shows_the_names_a_tcp_daemon_answers_to(self, public: TcpDaemon) -> None:
        r = public.daemon.cli("daemon", "status")
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if "answering to:" in x)
        assert f"TCP 0.0.0.0:{public.port}" in line
        for name in ("127.0.0.2", "ci.example", "localhost", "::1", "0.0.0.0"):
            assert name in line.split("answering to: ")[1].split(", "), line
        health = json.loads(public.daemon.cli("daemon", "status", "--json").stdout)["health"]
        assert "127.0.0.2" in health["tcp"]["allowed_hosts"]

    def test_a_stale_socket_after_sigkill_is_replaced_by_the_next_start(
        self, public: TcpDaemon
    ) -> None:
        killed = public.daemon
        assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
        assert killed.socket.exists(), "SIGKILL leaves the socket file behind"
        with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
            s.connect(str(killed.socket))

        second = start_daemon(killed.env)
        try:
            st = second.socket.lstat()
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            with second.client() as c:
                assert c.health()["pid"] == second.proc.pid
        finally:
            rc = second.stop()
        assert rc == 0, second.log.read_text()
        # A clean stop removes what the daemon created.
        assert not second.socket.exists()
        assert not public.paths.status_file.exists()


# --------------------------------------------------------------------------------------------
# S1/S2: configurations `kyros daemon serve` must refuse. Each attempt costs an import of the
# daemon (~2 s of CPU), so they all run at once and each test checks its own.


@dataclass
class Attempt:
    runtime_dir: Path
    port: int | None
    returncode: int
    stderr: str


RUNTIME_CASES = {
    "world_writable": "is writable by other users",
    "group_writable": "is writable by other users",
    "foreign_owner": "is owned by uid 65534",
    "symlink": "is not a directory",
}


#: The runtime dir's parent ($XDG_RUNTIME_DIR) is shared: the daemon must not create its
#: directory there at all (another user could rename it away and serve a socket of their own).
PARENT_CASES = {
    "parent_world_writable": (0o777, "is writable by other users without the sticky bit"),
    "parent_group_writable": (0o770, "is writable by other users without the sticky bit"),
}


def _prepare_runtime(case: str, runtime: Path) -> None:
    runtime.parent.mkdir(mode=0o700, exist_ok=True)
    if case in PARENT_CASES:
        runtime.parent.chmod(PARENT_CASES[case][0])
        return
    if case == "symlink":
        target = runtime.parent / "elsewhere"
        target.mkdir(mode=0o700)
        runtime.symlink_to(target)
        return
    runtime.mkdir(mode=0o700)
    if case == "world_writable":
        runtime.chmod(0o777)
    elif case == "group_writable":
        runtime.chmod(0o770)
    elif case == "foreign_owner":
        os.chown(runtime, 65534, 65534)


@pytest.fixture(scope="module")
def attempts(tcp_daemon: TcpDaemon) -> Iterator[dict[str, Attempt]]:
    with contextlib.ExitStack() as stack:
        launched: dict[str, tuple[subprocess.Popen[str], Path, int | None]] = {}

        def launch(name: str, env: dict[str, str], args: list[str], port: int | None) -> None:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kyros", "daemon", "serve", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            launched[name] = (proc, kpaths.resolve(env).runtime_dir, port)

        results: dict[str, Attempt] = {}
        try:
            for case in [*RUNTIME_CASES, *PARENT_CASES]:
                if case == "foreign_owner" and os.getuid() != 0:
                    continue  # only root can hand a directory to another user
                env = sqlite_env(stack.enter_context(xdg_dirs()))
                _prepare_runtime(case, kpaths.resolve(env).runtime_dir)
                launch(case, env, [], None)
            for case, extra in {
                "public_no_tls": ["--listen", "0.0.0.0:{port}"],
                "public_v6_no_tls": ["--listen", "[::]:{port}"],
                "tls_cert_only": ["--listen", "127.0.0.1:{port}", "--tls-cert", "/nonexistent/c"],
            }.items():
                port = free_port()
                env = sqlite_env(stack.enter_context(xdg_dirs()))
                launch(case, env, [a.format(port=port) for a in extra], port)
            launch("second_daemon", tcp_daemon.daemon.env, [], None)

            for name, (proc, runtime, port) in launched.items():
                try:
                    _, err = proc.communicate(timeout=90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate(timeout=10)
                    err += "\n[still running after 90 s: killed by the test]"
                results[name] = Attempt(runtime, port, proc.returncode, err)
        finally:
            for proc, _, _ in launched.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        yield results


@pytest.mark.parametrize("case", list(RUNTIME_CASES))
def test_unsafe_runtime_dir_is_refused(attempts: dict[str, Attempt], case: str) -> None:
    if case not in attempts:
        pytest.skip("changing a directory's owner needs root")
    a = attempts[case]
    assert a.returncode != 0, a.stderr
    assert "refusing to start" in a.stderr
    assert f"{a.runtime_dir} {RUNTIME_CASES[case]}" in a.stderr
    assert "Traceback" not in a.stderr
    # Refused before anything was created in (or through) the directory.
    real = a.runtime_dir.resolve()
    assert sorted(p.name for p in real.iterdir()) == []
    if case in ("world_writable", "group_writable"):
        # Refused, not quietly "fixed": the user must look at who else could have been in there.
        assert stat.S_IMODE(a.runtime_dir.stat().st_mode) & 0o022


@pytest.mark.parametrize("case", list(PARENT_CASES))
def test_runtime_dir_in_a_shared_parent_is_refused(attempts: dict[str, Attempt], case: str) -> None:
    a = attempts[case]
    assert a.returncode == 2, a.stderr
    assert f"refusing to start: {a.runtime_dir.parent} {PARENT_CASES[case][1]}" in a.stderr
    assert f"chmod 700 {a.runtime_dir.parent}" in a.stderr
    assert "Traceback" not in a.stderr
    assert not a.runtime_dir.exists()  # nothing created in the shared directory


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("case", ["public_no_tls", "public_v6_no_tls"])
def test_public_listen_without_tls_is_refused(attempts: dict[str, Attempt], case: str) -> None:
    a = attempts[case]
    assert a.returncode == 2, a.stderr
    assert "refusing to listen on non-loopback" in a.stderr
    assert "--tls-cert" in a.stderr and "--insecure-no-tls" in a.stderr
    assert "Traceback" not in a.stderr
    assert a.port is not None and _nothing_listens(a.port)
    assert not (a.runtime_dir / "kyros.sock").exists()


def test_tls_cert_without_key_is_a_usage_error(attempts: dict[str, Attempt]) -> None:
    a = attempts["tls_cert_only"]
    assert a.returncode == 2, a.stderr
    assert "--tls-cert and --tls-key go together" in a.stderr
    assert "Traceback" not in a.stderr
    assert a.port is not None and _nothing_listens(a.port)
    assert not (a.runtime_dir / "kyros.sock").exists()


def test_second_daemon_is_refused_and_the_first_keeps_serving(
    tcp_daemon: TcpDaemon, attempts: dict[str, Attempt]
) -> None:
    a = attempts["second_daemon"]
    assert a.returncode != 0, a.stderr
    assert "already running" in a.stderr
    assert f"pid {tcp_daemon.daemon.proc.pid}" in a.stderr
    assert "Traceback" not in a.stderr
    # The loser neither unlinked nor re-bound the path: the first daemon answers on both.
    assert tcp_daemon.daemon.proc.poll() is None
    assert stat.S_IMODE(tcp_daemon.daemon.socket.lstat().st_mode) == 0o600
    with tcp_daemon.uds() as c:
        assert c.get("/healthz").json()["pid"] == tcp_daemon.daemon.proc.pid
    with tcp_daemon.tcp() as c:
        assert c.get("/healthz", headers=tcp_daemon.auth()).json()["pid"] == (
            tcp_daemon.daemon.proc.pid
        )


# --------------------------------------------------------------------------------------------
# S3: Origin matrix, token checks


# Paths the app does not route: the guard answers before routing, so they are refused the same.
UNROUTED = [("GET", "/v1/nope"), ("DELETE", "/v1/runs/r_x"), ("PUT", "/openapi.json")]


def test_origin_matrix_over_tcp(tcp_daemon: TcpDaemon) -> None:
    origins = [
        *FOREIGN_ORIGINS,
        f"http://127.0.0.1:{free_port()}",
        f"http://localhost:{free_port()}",
    ]
    auths = {
        "no token": {},
        "valid token": tcp_daemon.auth(),
        "wrong token": tcp_daemon.auth(tokens.generate()),
    }
    bad = []
    with tcp_daemon.tcp() as c:
        for method, path in [*tcp_daemon.routes, *UNROUTED]:
            for origin in origins:
                for label, auth in auths.items():
                    r = send(c, method, path, {**auth, "Origin": origin})
                    if not refused(r, 403, "forbidden_origin"):
                        bad.append(
                            f"{method} {path} Origin={origin} {label}: "
                            f"{r.status_code} {r.text[:120]}"
                        )
    assert not bad, "\n".join(bad)


def test_token_is_required_over_tcp(tcp_daemon: TcpDaemon) -> None:
    bad = []
    with tcp_daemon.tcp() as c:
        for method, path in [*tcp_daemon.routes, *UNROUTED]:
            for label, headers in {
                "no token": {},
                "wrong token": tcp_daemon.auth(tokens.generate()),
            }.items():
                r = send(c, method, path, headers)
                if not refused(r, 401, "unauthorized"):
                    bad.append(f"{method} {path} {label}: {r.status_code} {r.text[:120]}")
    assert not bad, "\n".join(bad)


def test_valid_token_without_origin_reaches_every_route(tcp_daemon: TcpDaemon) -> None:
    bad = []
    with tcp_daemon.tcp() as c:
        for method, path in tcp_daemon.routes:
            r = send(c, method, path, tcp_daemon.auth())
            if r.status_code in (401, 403) or r.status_code >= 500:
                bad.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
            assert r.headers.get("x-kyros-api-version")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Basic {token}",
        "{token}",
        "Bearer {token}x",
        "Bearer x{token}",
        "Bearer {token_upper}",
    ],
)
def test_malformed_authorization_is_401(tcp_daemon: TcpDaemon, authorization: str) -> None:
    token = tcp_daemon.token
    value = authorization.format(token=token, token_upper=token.upper())
    with tcp_daemon.tcp() as c:
        assert refused(c.get("/v1/runs", headers={"Authorization": value}), 401, "unauthorized")


def test_scheme_is_case_insensitive(tcp_daemon: TcpDaemon) -> None:
    with tcp_daemon.tcp() as c:
        r = c.get("/v1/runs", headers={"Authorization": f"bearer {tcp_daemon.token}"})
        assert r.status_code == 200


def test_origin_matrix_over_the_unix_socket(tcp_daemon: TcpDaemon) -> None:
    bad = []
    with tcp_daemon.uds() as c:
        for method, path in [*tcp_daemon.routes, *UNROUTED]:
            for origin in [*FOREIGN_ORIGINS, f"http://127.0.0.1:{tcp_daemon.port}"]:
                r = send(c, method, path, {"Origin": origin})
                if not refused(r, 403, "forbidden_origin"):
                    bad.append(f"{method} {path} Origin={origin}: {r.status_code} {r.text[:120]}")
            r = send(c, method, path, {})  # the socket's 0600 mode is the credential
            if (method, path) not in UNROUTED and r.status_code in (401, 403):
                bad.append(f"{method} {path} without Origin: {r.status_code} {r.text[:120]}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------------------------
# S4: Host (DNS rebinding)

FOREIGN_HOSTS = [
    "attacker.example",
    "attacker.example:{port}",
    "127.0.0.1.attacker.example",
    "localhost.attacker.example:{port}",
    "kyros.attacker.example",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_host_is_refused_over_tcp_even_with_a_token(
    tcp_daemon: TcpDaemon, host: str
) -> None:
    with tcp_daemon.tcp() as c:
        headers = {**tcp_daemon.auth(), "Host": host.format(port=tcp_daemon.port)}
        assert refused(c.get("/v1/runs", headers=headers), 403, "forbidden_host")
        assert refused(c.post("/v1/runs/plan", json={}, headers=headers), 403, "forbidden_host")


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_host_is_refused_over_the_unix_socket(tcp_daemon: TcpDaemon, host: str) -> None:
    with tcp_daemon.uds() as c:
        headers = {"Host": host.format(port=tcp_daemon.port)}
        assert refused(c.get("/v1/runs", headers=headers), 403, "forbidden_host")


MALFORMED_HOSTS = [
    "[::1].evil",
    "[::1].evil:{port}",
    "localhost:evil",
    "127.0.0.1:{port}:1",
    "localhost:99999",
    "[::1]:",
    "::1",
    "[evil]",
    "local host",
    "localhost..",
    "",
]


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_malformed_host_is_refused(tcp_daemon: TcpDaemon, host: str) -> None:
    with tcp_daemon.tcp() as c:
        headers = {**tcp_daemon.auth(), "Host": host.format(port=tcp_daemon.port)}
        assert refused(c.get("/v1/runs", headers=headers), 400, "bad_request")
    with tcp_daemon.uds() as c:
        headers = {"Host": host.format(port=tcp_daemon.port)}
        assert refused(c.get("/v1/runs", headers=headers), 400, "bad_request")


def _raw_get(port: int, hosts: list[str], token: str) -> bytes:
    """A GET with exactly these Host headers (httpx would merge them), read to the end."""
    head = "".join(f"Host: {h}\r\n" for h in hosts)
    request = (
        f"GET /v1/runs HTTP/1.1\r\n{head}Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "hosts",
    [
        ["attacker.example", "127.0.0.1:{port}"],
        ["127.0.0.1:{port}", "attacker.example"],
        ["127.0.0.1:{port}", "127.0.0.1:{port}"],
    ],
)
def test_duplicate_host_headers_are_refused(tcp_daemon: TcpDaemon, hosts: list[str]) -> None:
    port = tcp_daemon.port
    answer = _raw_get(port, [h.format(port=port) for h in hosts], tcp_daemon.token)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code": "bad_request"' in answer or b'"code":"bad_request"' in answer
    one = _raw_get(port, [f"127.0.0.1:{port}"], tcp_daemon.token)
    assert one.startswith(b"HTTP/1.1 200"), one[:200]


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LocalHost.:{port}", "[0::1]"]
)
def test_local_host_names_are_served(tcp_daemon: TcpDaemon, host: str) -> None:
    with tcp_daemon.tcp() as c:
        headers = {**tcp_daemon.auth(), "Host": host.format(port=tcp_daemon.port)}
        assert c.get("/v1/runs", headers=headers).status_code == 200


# --------------------------------------------------------------------------------------------
# WebSocket handshakes: the guard runs before routing, so there is no route needed to test it


def _ws_status(connect: Any) -> int:
    with pytest.raises(InvalidStatus) as info, connect():
        pass
    return int(info.value.response.status_code)


def test_websocket_with_foreign_origin_is_refused_over_tcp(tcp_daemon: TcpDaemon) -> None:
    uri = f"ws://127.0.0.1:{tcp_daemon.port}/v1/anything"
    for origin in [*FOREIGN_ORIGINS, f"http://127.0.0.1:{free_port()}"]:
        headers = {"Origin": origin, **tcp_daemon.auth()}
        status = _ws_status(
            lambda h=headers: ws_client.connect(uri, additional_headers=h, open_timeout=10)
        )
        assert status == 403, origin


def test_websocket_with_foreign_host_is_refused(tcp_daemon: TcpDaemon) -> None:
    def connect() -> Any:
        sock = socket.create_connection(("127.0.0.1", tcp_daemon.port), timeout=10)
        return ws_client.connect(
            f"ws://attacker.example:{tcp_daemon.port}/v1/anything",
            sock=sock,
            additional_headers=tcp_daemon.auth(),
            open_timeout=10,
        )

    assert _ws_status(connect) == 403


def test_websocket_with_foreign_origin_is_refused_over_the_unix_socket(
    tcp_daemon: TcpDaemon,
) -> None:
    status = _ws_status(
        lambda: ws_client.unix_connect(
            str(tcp_daemon.daemon.socket),
            "ws://kyros/v1/anything",
            additional_headers={"Origin": "https://evil.example"},
            open_timeout=10,
        )
    )
    assert status == 403


# --------------------------------------------------------------------------------------------
# S7: token storage and rotation


def test_token_files_are_private_and_only_the_hash_is_kept_for_the_daemon(
    tcp_daemon: TcpDaemon,
) -> None:
    p = tcp_daemon.paths
    token = tcp_daemon.token
    assert token.startswith(tokens.TOKEN_PREFIX) and len(token) > 40
    for path in (p.token_hash_file, p.credentials_file):
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_uid == os.getuid()
    assert stat.S_IMODE(p.state_dir.stat().st_mode) == 0o700
    stored = p.token_hash_file.read_text()
    assert token not in stored
    assert token.removeprefix(tokens.TOKEN_PREFIX) not in stored
    assert stored.strip() == hashlib.sha256(token.encode()).hexdigest()
    # No stray copies of the token (e.g. temp files from an interrupted write).
    assert sorted(f.name for f in p.state_dir.iterdir() if f.name.startswith(".")) == []


def test_rotate_refuses_the_old_token_at_once(tcp_daemon: TcpDaemon) -> None:
    old = tcp_daemon.token
    shown = run_cli(tcp_daemon.daemon.env, "daemon", "token")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == old

    rotated = run_cli(tcp_daemon.daemon.env, "daemon", "token", "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new and new != old
    assert tcp_daemon.token == new

    with tcp_daemon.tcp() as c:
        assert refused(c.get("/v1/runs", headers=tcp_daemon.auth(old)), 401, "unauthorized")
        assert c.get("/v1/runs", headers=tcp_daemon.auth(new)).status_code == 200
    assert tcp_daemon.daemon.proc.poll() is None  # same process: no restart was needed
    for path in (tcp_daemon.paths.token_hash_file, tcp_daemon.paths.credentials_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert old not in tcp_daemon.paths.credentials_file.read_text()


def test_rotation_within_one_timestamp_tick_is_seen(tcp_daemon: TcpDaemon) -> None:
    # Two rotations can land on the same mtime (coarse file system timestamps, or two
    # `--rotate` in a row): the daemon must still verify against the file's current content.
    p = tcp_daemon.paths
    first = tokens.generate()
    tokens.install(p, first)
    try:
        with tcp_daemon.tcp() as c:
            assert c.get("/v1/runs", headers=tcp_daemon.auth(first)).status_code == 200
            mtime_ns = p.token_hash_file.stat().st_mtime_ns
            second = tokens.generate()
            tokens.install(p, second)
            os.utime(p.token_hash_file, ns=(mtime_ns, mtime_ns))
            assert refused(c.get("/v1/runs", headers=tcp_daemon.auth(first)), 401, "unauthorized")
            assert c.get("/v1/runs", headers=tcp_daemon.auth(second)).status_code == 200
    finally:
        tokens.install(p, tokens.generate())  # a new mtime: the module's daemon sees it again
