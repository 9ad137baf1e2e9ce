"""User mistakes across the CLI, each against a real daemon on a temporary socket (or a daemon
that lies: a real HTTP server answering what no kyros daemon would).

Every mistake must end with its documented exit code and a message that names the problem and
the next thing to do; never a traceback, a library's class name, the validator's phrasing or an
internal field name. With ``--json`` the same mistake also prints ``{"error": {"code",
"message", "hint"}}`` on stdout. Every hint that names a command names one that exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FAST_QUEUE,
    REPO,
    Daemon,
    database,
    kyros_env,
    require_pg,
    run_cli,
    start_daemon,
    xdg_dirs,
)

#: What must never reach a user without --debug.
FORBIDDEN = (
    "Traceback",
    "internal error",
    "please report it",
    # library class names
    "litellm.",
    "InternalServerError",
    "KeyError",
    "TypeError",
    "ValueError",
    "InvalidURL",
    "ConnectError",
    "JSONDecodeError",
    "httpx",
    "pydantic",
    "Handle with",
    # the validator's phrasing
    "after validation",
    "should match pattern",
    "String should",
    "Input should",
    "Field required",
    # internal field names
    "approval_policy",
    "query.",
    "body.",
)


@dataclass
class Mistake:
    """One thing a user gets wrong: the command line, the exit code, words the message must
    hold (the problem and the fix), and whether the command takes ``--json``."""

    name: str
    args: list[str]
    exit: int
    words: tuple[str, ...]
    json: bool = True
    absent: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: The first model call imports litellm in the daemon: up to a minute on a loaded machine.
    timeout: float = 60


W = str(REPO / "examples" / "greeter")
MISSING_RUN = "r_0000000000000000"

MISTAKES = [
    # Run ids that are not ids: encoded paths, a usage error (exit 2), never another endpoint.
    Mistake("show ../agents", ["runs", "show", "../agents"], 2, ("not a run id", "runs list")),
    Mistake("show empty id", ["runs", "show", ""], 2, ("not a run id", "runs list")),
    Mistake("show id?query", ["runs", "show", "ID?x=1"], 2, ("not a run id",)),
    Mistake("show control char", ["runs", "show", "r_\x07x"], 2, ("not a run id",)),
    Mistake("show escape", ["runs", "show", "r\x1b]0;x\x07"], 2, ("not a run id",)),
    Mistake("show missing run", ["runs", "show", MISSING_RUN], 2, ("no run", "runs list")),
    Mistake("events bad id", ["runs", "events", "../x"], 2, ("not a run id",)),
    Mistake("cancel bad id", ["runs", "cancel", "a/b"], 2, ("not a run id",)),
    Mistake("cancel missing", ["runs", "cancel", MISSING_RUN], 2, ("no run", "runs list")),
    Mistake("diff bad id", ["runs", "diff", "ID?x=1"], 2, ("not a run id",), json=False),
    Mistake("approve bad id", ["run", "approve", "../agents"], 2, ("not a run id",)),
    Mistake("apply empty id", ["run", "apply", ""], 2, ("not a run id",)),
    Mistake("list --before bad", ["runs", "list", "--before", "../x"], 2, ("not a run id",)),
    # Filters and options: the flag's own name, the value, the accepted values.
    Mistake(
        "list --status bogus",
        ["runs", "list", "--status", "bogus"],
        2,
        ("--status", "'bogus'", "queued", "succeeded"),
    ),
    Mistake("list --kind bogus", ["runs", "list", "--kind", "bogus"], 2, ("--kind", "'bogus'")),
    Mistake("list --limit 0", ["runs", "list", "--limit", "0"], 2, ("--limit", "0")),
    Mistake("no such command", ["runs", "lst"], 2, ("No such command", "list"), json=False),
    # Agents.
    Mistake("agent bad name", ["agents", "add", "BadName"], 2, ("NAME", "lowercase")),
    Mistake(
        "agent --policy bogus",
        ["agents", "add", "careful", "--policy", "bogus"],
        2,
        ("--policy", "'bogus'", "read-only", "full"),
    ),
    Mistake(
        "agent --tools bogus",
        ["agents", "add", "careful", "--tools", "bogus"],
        2,
        ("--tools", "read", "command"),
    ),
    Mistake("agent --role bogus", ["agents", "add", "careful", "--role", "bogus"], 2, ("--role",)),
    Mistake("agent missing", ["agents", "show", "nosuch"], 2, ("no agent", "agents list")),
    Mistake("agent bad path", ["agents", "show", "../runs"], 2, ("not an agent name",)),
    Mistake("agent edit nothing", ["agents", "edit", "implementer"], 2, ("nothing to change",)),
    Mistake(
        "agent edit missing",
        ["agents", "edit", "nosuch", "--policy", "ask"],
        2,
        ("no agent", "agents list"),
    ),
    Mistake("agent rm built-in", ["agents", "rm", "planner"], 2, ("built in",), json=False),
    Mistake("agent add existing", ["agents", "add", "implementer"], 2, ("exists", "agents edit")),
    # Terminals.
    Mistake(
        "term attach missing",
        ["term", "attach", "nosuch"],
        2,
        ("no terminal", "kyros term ls"),
        json=False,
        absent=("term list",),
    ),
    Mistake("term kill missing", ["term", "kill", "nosuch"], 2, ("no terminal", "term ls")),
    Mistake("term logs bad", ["term", "logs", "../x"], 2, ("not a terminal",), json=False),
    Mistake("term new bad cwd", ["term", "new", "--cwd", "/nonexistent/x"], 2, ("--cwd",)),
    Mistake(
        "term new bad name", ["term", "new", "--name", "bad name!", "--", "true"], 2, ("--name",)
    ),
    # Runs.
    Mistake("plan empty goal", ["run", "plan", "", "-w", W, "--model", "demo"], 2, ("GOAL",)),
    Mistake(
        "plan unknown model",
        ["run", "plan", "x", "-w", W, "--model", "nosuchmodel"],
        2,
        ("'nosuchmodel'", "unknown", "kyros models list"),
        absent=("OPENAI_API_KEY",),
    ),
    Mistake(
        "plan unknown provider",
        ["run", "plan", "x", "-w", W, "--model", "nosuch/model"],
        1,  # the run was made, and failed: --json prints that run
        ("no provider is known", "nosuch/model", "kyros models list"),
        json=False,
        timeout=240,
    ),
    Mistake(
        "plan no model configured",
        ["run", "plan", "x", "-w", W],
        2,
        ("no AI model is configured", "--model demo"),
    ),
    Mistake(
        "plan bad workspace",
        ["run", "plan", "x", "-w", "/nonexistent/x", "--model", "demo"],
        2,
        ("--workspace", "not a directory"),
    ),
    Mistake(
        "plan --api-base without model",
        ["run", "plan", "x", "-w", W, "--api-base", "http://127.0.0.1:9/v1"],
        2,
        ("--api-base", "--model openai/NAME"),
    ),
    Mistake(
        "plan --budget negative",
        ["run", "plan", "x", "-w", W, "--model", "demo", "--budget", "-1"],
        2,
        ("--budget",),
    ),
    Mistake(
        "plan --json and --jsonl",
        ["run", "plan", "x", "-w", W, "--model", "demo", "--json", "--jsonl"],
        2,
        ("--json", "--jsonl"),
        json=False,
    ),
    Mistake("critic no target", ["run", "critic", "-w", W], 2, ("--run", "--diff", "--range")),
    Mistake(
        "critic unreadable diff",
        ["run", "critic", "--diff", "/nonexistent/x.diff", "-w", W],
        2,
        ("cannot read", "--diff"),
    ),
    Mistake(
        "pipeline --until bogus",
        ["run", "pipeline", "x", "-w", W, "--until", "bogus"],
        2,
        ("--until", "plan, implement or critic"),
    ),
    Mistake("models show missing", ["models", "show", "nosuch"], 2, ("nosuch", "models list")),
    Mistake(
        "completion bad shell",
        ["completion", "--shell", "tcsh"],
        2,
        ("bash, zsh or fish",),
        json=False,
    ),
    # Daemon addresses.
    Mistake(
        "daemon ipv6 typo",
        ["--daemon", "http://[::1", "runs", "list"],
        2,
        ("'http://[::1'", "not understood", "http(s)://HOST:PORT"),
    ),
    Mistake(
        "daemon bad scheme",
        ["--daemon", "ftp://host", "runs", "list"],
        2,
        ("not understood", "unix:///"),
    ),
    Mistake(
        "daemon bad port",
        ["--daemon", "http://127.0.0.1:http", "runs", "list"],
        2,
        ("not understood",),
    ),
    Mistake(
        "daemon unreachable",
        ["--daemon", "http://127.0.0.1:9", "runs", "list"],
        3,
        ("cannot reach", "http://127.0.0.1:9", "check the address"),
    ),
    Mistake(
        "remote daemon token",
        ["--daemon", "http://10.255.255.1:8765", "daemon", "token"],
        2,
        ("another machine", "10.255.255.1", "kyros daemon token"),
        json=False,
    ),
]


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()


def _with_json(args: list[str]) -> list[str]:
    """``args`` with ``--json`` for the command (before a ``--``)."""
    if "--" in args:
        i = args.index("--")
        return [*args[:i], "--json", *args[i:]]
    return [*args, "--json"]


def check_mistake(out: subprocess.CompletedProcess[str], m: Mistake, *, as_json: bool) -> str:
    """Assert the shape of a reported mistake; return the text the user read."""
    told = out.stderr + ("" if as_json else out.stdout)
    assert out.returncode == m.exit, (m.name, out.returncode, told)
    for word in m.words:
        assert word in told, (m.name, word, told)
    for word in (*FORBIDDEN, *m.absent):
        assert word not in told, (m.name, word, told)
    assert "\x1b" not in told and "\x07" not in told, (m.name, told)
    if as_json:
        doc = json.loads(out.stdout)
        error = doc["error"]
        assert set(error) == {"code", "message", "hint"}, doc
        assert error["code"] and error["message"], doc
        assert error["hint"], doc
        for word in FORBIDDEN:
            assert word not in json.dumps(doc), (m.name, word, doc)
    return told


@pytest.mark.parametrize("m", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_is_told_in_words(daemon: Daemon, m: Mistake) -> None:
    assert len(MISTAKES) >= 40
    env = {**daemon.env, **m.env}
    check_mistake(run_cli(env, *m.args, timeout=m.timeout), m, as_json=False)
    if m.json:
        check_mistake(run_cli(env, *_with_json(m.args), timeout=m.timeout), m, as_json=True)


def test_a_goal_that_is_not_utf8_is_a_usage_error(daemon: Daemon) -> None:
    """A lone surrogate: Python's form of a byte of the command line that is not UTF-8."""
    argv = [
        sys.executable,
        "-m",
        "kyros",
        "run",
        "plan",
        b"caf\xff".decode(errors="surrogateescape"),
    ]
    out = subprocess.run(
        [os.fsencode(a) for a in [*argv, "-w", W, "--model", "demo", "--json"]],
        env=daemon.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    m = Mistake("surrogate", [], 2, ("not valid UTF-8", "0xff"))
    stderr = out.stderr.decode()
    check_mistake(
        subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), stderr),
        m,
        as_json=True,
    )


# --- a daemon that lies ------------------------------------------------------------------


class _Liar(BaseHTTPRequestHandler):
    """Answers every request the way ``server.mode`` says; no kyros daemon answers so."""

    def _answer(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        self.server.auth.append(self.headers.get("authorization"))  # type: ignore[attr-defined]
        status, kind, body = {
            "html": (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
            "html-500": (500, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
            "not-json": (200, "application/json", b"{not json"),
            "wrong-shape": (200, "application/json", b'{"hello": "world"}'),
            "list-shape": (200, "application/json", b"[1, 2, 3]"),
            "bare-401": (401, "text/plain", b""),
        }[mode]
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def liar() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    server.mode = "html"  # type: ignore[attr-defined]
    server.auth = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


LIES = [
    ("html", ["runs", "list"], 3, ("something other than a kyros daemon", "HTTP 200")),
    ("html-500", ["runs", "show", MISSING_RUN], 3, ("something other than a kyros daemon",)),
    ("not-json", ["runs", "list"], 3, ("not JSON",)),
    ("wrong-shape", ["runs", "list"], 3, ("another shape",)),
    ("wrong-shape", ["runs", "show", MISSING_RUN], 3, ("another shape",)),
    ("wrong-shape", ["agents", "list"], 3, ("another shape",)),
    ("list-shape", ["term", "ls"], 3, ("another shape",)),
    ("bare-401", ["runs", "list"], 4, ("requires a token", "none was sent", "--token")),
]


@pytest.mark.parametrize(("mode", "args", "code", "words"), LIES, ids=[x[0] for x in LIES])
def test_a_daemon_that_lies_is_told_in_words(
    liar: ThreadingHTTPServer,
    mode: str,
    args: list[str],
    code: int,
    words: tuple[str, ...],
) -> None:
    liar.mode = mode  # type: ignore[attr-defined]
    with xdg_dirs() as xdg:
        env = kyros_env(xdg)
        url = f"http://127.0.0.1:{liar.server_address[1]}"
        m = Mistake(mode, ["--daemon", url, *args], code, (*words, url))
        check_mistake(run_cli(env, *m.args), m, as_json=False)
        check_mistake(run_cli(env, *m.args, "--json"), m, as_json=True)


def test_no_token_and_a_wrong_token_are_different_messages(liar: ThreadingHTTPServer) -> None:
    liar.mode = "bare-401"  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{liar.server_address[1]}"
    with xdg_dirs() as xdg:
        env = kyros_env(xdg)
        none = run_cli(env, "--daemon", url, "runs", "list")
        wrong = run_cli(env, "--daemon", url, "--token", "not-the-token", "runs", "list")
    assert liar.auth[0] is None and liar.auth[-1] == "Bearer not-the-token"  # type: ignore[attr-defined]
    assert none.returncode == wrong.returncode == 4
    assert "none was sent" in none.stderr and url in none.stderr
    assert "refused the token that was sent" in wrong.stderr and url in wrong.stderr
    assert "kyros daemon token" in wrong.stderr and "daemon's machine" in wrong.stderr
    assert "not-the-token" not in wrong.stderr


def test_a_missing_postgresql_database_names_the_url_and_the_fix() -> None:
    require_pg()
    from tests.support.postgres import PG_ADMIN_DSN

    base = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
    host = base.split("@", 1)[-1].split("/", 1)[0]
    url = f"postgresql+asyncpg://kyros:s3cret-pw@{host}/kyros_no_such_db_x"
    with xdg_dirs() as xdg:
        out = run_cli(kyros_env(xdg, KYROS_DATABASE_URL=url), "db", "status")
    m = Mistake("pg", [], 3, ("kyros_no_such_db_x", "does not exist", "createdb", "***"))
    told = check_mistake(out, m, as_json=False)
    assert "s3cret-pw" not in told


def test_an_unreachable_api_base_is_told_once_with_model_and_address(daemon: Daemon) -> None:
    out = daemon.cli(
        "run", "plan", "x", "-w", W, "--model", "openai/local-model",
        "--api-base", "http://127.0.0.1:9/v1",
        timeout=240,
    )  # fmt: skip
    told = out.stderr + out.stdout
    assert out.returncode == 1, told
    assert "could not reach the provider" in told, told
    assert "openai/local-model" in told and "--api-base http://127.0.0.1:9/v1" in told, told
    final = [line for line in told.splitlines() if "failed" in line and "run r_" in line]
    assert len(final) == 1, told  # one line: no 80-column wrapping in a pipe
    assert told.count("could not reach the provider") == 1, told  # once, not twice
    for word in FORBIDDEN:
        assert word not in told, (word, told)


def test_an_internal_error_has_its_own_exit_code(daemon: Daemon, tmp_path: Path) -> None:
    """A bug in a command (one added here that fails as a bug would) exits 70, with the words
    "please report it" and, with --json, a JSON document; README documents the code."""
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\n"
        "from kyros.cli import main\n"
        "@main.app.command('crash-for-test')\n"
        "def crash(json_out: bool = main.typer.Option(False, '--json')) -> None:\n"
        "    {}['missing']\n"
        "sys.argv = ['kyros', 'crash-for-test', '--json']\n"
        "main.run()\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 70, out.stderr
    assert "internal error (KeyError)" in out.stderr and "please report it" in out.stderr
    assert json.loads(out.stdout)["error"]["code"] == "internal"
    assert "70 internal error" in (REPO / "README.md").read_text()


def _commands_in(text: str) -> set[str]:
    """The ``kyros …`` commands a text names, up to the first option or placeholder."""
    found = set()
    for match in re.finditer(r"kyros((?: [a-z][a-z-]*)+)", text):
        found.add("kyros" + match.group(1))
    return found


def test_every_hint_names_a_real_command(daemon: Daemon) -> None:
    """Every command a hint or a message names (in the code, and in what the mistakes above
    print) answers ``--help``: no hint sends the user to `kyros term list`."""
    named: set[str] = set()
    for path in (REPO / "src" / "kyros").rglob("*.py"):
        for quoted in re.findall(r"`(kyros [^`]+)`", path.read_text()):
            named |= _commands_in(quoted)
    for m in MISTAKES[:12]:
        out = run_cli(daemon.env, *m.args)
        named |= _commands_in(out.stderr)
    assert "kyros term ls" in named and "kyros runs list" in named
    assert "kyros term list" not in named
    groups = ("run", "runs", "agents", "term", "daemon", "models", "auth", "config", "db")
    for command in sorted(named):
        words = command.split()[1:]
        words = words[:2] if words[0] in groups and len(words) > 1 else words[:1]
        out = run_cli(daemon.env, *words, "--help")
        assert out.returncode == 0, (command, out.stderr)
