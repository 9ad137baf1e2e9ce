"""`kyros run plan` end to end: CLI → client → real daemon process → queue → model → store.

The model is either the scripted `demo` or the fake OpenAI-compatible server on 127.0.0.1
(real HTTP and SSE); nothing inside kyros is mocked.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, kyros_env, run_cli
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeter"

VALID_PLAN = {
    "summary": "Add a --verbose flag to the greeter CLI.",
    "steps": [
        {
            "title": "Add the flag",
            "detail": "argparse option in __main__.py",
            "files": ["greeter/__main__.py"],
            "tests": [],
        },
        {
            "title": "Test it",
            "detail": "cover the flag",
            "files": ["tests/test_greet.py"],
            "tests": ["tests/test_greet.py::test_verbose"],
        },
    ],
    "risks": ["none worth noting"],
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    dest = tmp_path / "greeter"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _plan_args(workspace: Path, srv: FakeOpenAI, *extra: str) -> list[str]:
    return [
        "run",
        "plan",
        "add a --verbose flag",
        "--workspace",
        str(workspace),
        "--model",
        "openai/fake-planner",
        "--api-base",
        srv.url,
        *extra,
    ]


def test_demo_plan_starts_a_daemon_on_demand(xdg: dict[str, str], workspace: Path) -> None:
    env = kyros_env(xdg)
    try:
        out = run_cli(
            env,
            "run",
            "plan",
            "add a --verbose flag",
            "-w",
            str(workspace),
            "--model",
            "demo",
            timeout=90,
        )
        assert out.returncode == 0, out.stderr
        assert "scripted demo" in out.stdout  # every demo output says what it is
        assert "## Steps" in out.stdout
        # The daemon outlives the CLI that started it.
        status = run_cli(env, "daemon", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["ready"]["ready"] is True
    finally:
        run_cli(env, "daemon", "stop")


def test_plan_against_openai_compatible_server(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(text=json.dumps(VALID_PLAN), prompt_tokens=900, completion_tokens=120)
    )
    out = shared_daemon.cli(*_plan_args(workspace, fake_openai, "--json"))
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)  # exactly one JSON document on stdout
    assert run["status"] == "succeeded"
    assert run["output"]["plan"]["steps"][0]["title"] == "Add the flag"
    assert (run["tokens_in"], run["tokens_out"]) == (900, 120)
    request = fake_openai.requests[-1]
    assert request.body["model"] == "fake-planner" and request.body["stream"] is True
    prompt = "\n".join(m["content"] for m in request.body["messages"])
    assert "add a --verbose flag" in prompt and "greeter/__main__.py" in prompt  # context sent


def test_invalid_plan_is_re_asked_once_with_the_error(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(text='{"summary": "missing steps"}'),
        Reply(text="Here you go:\n```json\n" + json.dumps(VALID_PLAN) + "\n```"),
    )
    out = shared_daemon.cli(*_plan_args(workspace, fake_openai, "--json"))
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    events = shared_daemon.client().events(run["id"], follow=False)
    types = [e["type"] for e in events]
    assert types.count("plan.invalid") == 1
    second = fake_openai.requests[-1].body["messages"]
    assert "steps" in second[-1]["content"] and second[-2]["role"] == "assistant"


def test_plan_invalid_twice_fails_with_exit_1(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text="no json here"), Reply(text="still none"))
    out = shared_daemon.cli(*_plan_args(workspace, fake_openai))
    assert out.returncode == 1
    assert "invalid twice" in out.stderr


def test_provider_error_fails_the_run_with_a_clear_message(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply.error(401, "Incorrect API key provided"))
    out = shared_daemon.cli(*_plan_args(workspace, fake_openai, "--json"))
    assert out.returncode == 1
    run = json.loads(out.stdout)
    assert run["status"] == "failed" and "credentials" in run["error"]
    assert "Traceback" not in out.stderr


def test_goal_from_stdin_and_through_jq(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.default = Reply(text=json.dumps(VALID_PLAN))
    out = shared_daemon.cli(
        "run",
        "plan",
        "-",
        "-w",
        str(workspace),
        "--model",
        "openai/fake",
        "--api-base",
        fake_openai.url,
        "--json",
        input="split the parser\n",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["goal"] == "split the parser"
    if shutil.which("jq"):
        pipeline = subprocess.run(
            f"{sys.executable} -m kyros run plan 'add a flag' -w "
            + str(workspace)
            + f" --model openai/fake --api-base {fake_openai.url} --json | jq -r .status",
            shell=True,
            env=shared_daemon.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert pipeline.stdout.strip() == "succeeded", pipeline.stderr


def test_detached_run_outlives_the_cli_and_replays_its_events(
    shared_daemon: Daemon, workspace: Path
) -> None:
    started = time.monotonic()
    out = shared_daemon.cli(
        "run", "plan", "add a flag", "-w", str(workspace), "-m", "demo", "--detach"
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 10  # returns at once (process start-up dominates)
    run_id = out.stdout.strip()
    assert run_id.startswith("r_")
    later = shared_daemon.cli("runs", "events", run_id, "--jsonl")
    assert later.returncode == 0, later.stderr
    events = [json.loads(line) for line in later.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # whole log, no gap
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.succeeded"
    shown = shared_daemon.cli("runs", "show", run_id, "--json")
    assert json.loads(shown.stdout)["status"] == "succeeded"
    listed = shared_daemon.cli("runs", "list", "--json")
    assert run_id in [r["id"] for r in json.loads(listed.stdout)["runs"]]


def test_no_model_configured_fails_at_once(shared_daemon: Daemon, workspace: Path) -> None:
    before = len(shared_daemon.client().runs(limit=1000))
    out = shared_daemon.cli("run", "plan", "add a flag", "-w", str(workspace))
    assert out.returncode == 2
    assert "no AI model is configured" in out.stderr and "--model demo" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(shared_daemon.client().runs(limit=1000)) == before  # nothing was queued


def test_unknown_run_id_and_bad_arguments(shared_daemon: Daemon) -> None:
    for args in (
        ["runs", "show", "r_nope"],
        ["runs", "events", "r_nope"],
        ["runs", "cancel", "r_nope"],
    ):
        out = shared_daemon.cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert "no run with id" in out.stderr
    out = shared_daemon.cli("run", "plan")
    assert out.returncode == 2 and "Missing argument" in out.stderr
    out = shared_daemon.cli("run", "plan", "x", "--no-such-flag")
    assert out.returncode == 2


def _http(daemon: Daemon) -> Any:
    import httpx

    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://kyros"
    )


def test_bad_request_bodies_get_4xx_in_one_shape(shared_daemon: Daemon, workspace: Path) -> None:
    ws = str(workspace)
    cases = [
        (b"{not json", 422),
        (json.dumps({"goal": "x" * (1024 * 1024), "workspace": ws}).encode(), 413),
        (json.dumps({"goal": "x" * 70_000, "workspace": ws}).encode(), 422),
        (json.dumps({"goal": "a\u0000b", "workspace": ws}).encode(), 422),
        (b'{"goal": "\\ud800", "workspace": "' + ws.encode() + b'"}', 422),
        (json.dumps({"goal": "x", "workspace": ws, "model": "demo", "bogus": 1}).encode(), 422),
        (json.dumps({"goal": "x", "workspace": "relative/dir", "model": "demo"}).encode(), 422),
        (json.dumps({"goal": "x", "workspace": ws, "model": 2**63}).encode(), 422),
    ]
    with _http(shared_daemon) as http:
        before = len(http.get("/v1/runs?limit=1000").json()["runs"])
        for body, status in cases:
            r = http.post(
                "/v1/runs/plan", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == status, (body[:60], r.status_code, r.text[:200])
            error = r.json()["error"]
            assert set(error) == {"code", "message", "detail"} and error["message"]
            assert len(r.content) < 10_000  # inputs are not echoed back
        assert http.get("/v1/runs/r_missing").status_code == 404
        assert http.get("/v1/nowhere").json()["error"]["code"] == "not_found"
        assert http.get("/v1/runs?limit=99999999999999999999").status_code == 422
        assert (
            http.post("/v1/runs/bogus-kind", json={"goal": "x", "workspace": ws}).status_code == 422
        )
        after = len(http.get("/v1/runs?limit=1000").json()["runs"])
        assert after == before  # no bad request created a run


def test_dead_daemon_and_unreachable_database(xdg: dict[str, str], workspace: Path) -> None:
    env = kyros_env(xdg)
    out = run_cli(env, "--daemon", "unix:///tmp/kyros-nowhere.sock", "runs", "list")
    assert out.returncode == 3 and "cannot reach the kyros daemon" in out.stderr
    out = run_cli(env, "--daemon", "http://127.0.0.1:9", "runs", "list")
    assert out.returncode == 3
    bad_db = kyros_env(xdg, KYROS_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    out = run_cli(bad_db, "run", "plan", "x", "-w", str(workspace), "-m", "demo", timeout=60)
    assert out.returncode == 3, out.stderr
    assert "failed to start" in out.stderr and "database" in out.stderr.lower()
    assert "Traceback" not in out.stderr.split("ends with:")[0]


def test_cancel_a_queued_run(
    shared_daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN), delay_first_chunk=30))
    out = shared_daemon.cli(*_plan_args(workspace, fake_openai, "--detach"))
    run_id = out.stdout.strip()
    fake_openai.wait_for_requests(1, timeout=20)  # the model call is in flight
    cancelled = shared_daemon.cli("runs", "cancel", run_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run = shared_daemon.client().run(run_id)
        if run["status"] == "cancelled":
            break
        time.sleep(0.1)
    assert run["status"] == "cancelled"
    again = shared_daemon.cli("runs", "cancel", run_id)
    assert again.returncode == 2 and "already cancelled" in again.stderr


def test_secrets_reach_neither_config_nor_logs_nor_store(
    xdg: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    from tests.conftest import FAST_QUEUE, start_daemon

    key, token = "sk-sentinel-4f9a2c-provider", "kyt_sentinel_7d1e_token"
    db = f"{xdg['XDG_DATA_HOME']}/s11.db"
    env = kyros_env(
        xdg,
        OPENAI_API_KEY=key,
        KYROS_TOKEN=token,
        KYROS_LOG_LEVEL="DEBUG",
        KYROS_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        **FAST_QUEUE,
    )
    d = start_daemon(env)
    try:
        with _http(d) as http:
            assert key not in http.get("/v1/config").text
            assert token not in http.get("/v1/config").text
        # Tried, retried once by the router (its one retry layer), then the run fails.
        fake_openai.enqueue(*[Reply.error(500, f"upstream exploded, key was {key}")] * 2)
        out = d.cli(
            "run",
            "plan",
            "x",
            "-w",
            str(workspace),
            "--model",
            "openai/gpt-4.1-mini",
            "--api-base",
            fake_openai.url,
            "--json",
        )
        assert out.returncode == 1
        error = json.loads(out.stdout)["error"]
        assert "upstream exploded" in error and "***" in error  # the provider's words, scrubbed
        # The provider did get the key (per call), and nothing else kept it.
        assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {key}"
        events = d.cli("runs", "events", json.loads(out.stdout)["id"], "--jsonl").stdout
        assert len(fake_openai.requests) == 2 and '"model.retry"' in events
    finally:
        d.stop()
    import base64
    from urllib.parse import quote

    dump = (
        Path(db).read_bytes() + Path(db + "-wal").read_bytes()
        if Path(db + "-wal").exists()
        else Path(db).read_bytes()
    )
    for secret in (key, token):
        for form in (secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()):
            assert form not in d.log.read_text()
            assert form not in events
            assert form.encode() not in dump


def test_following_survives_the_daemon_killed_mid_run(
    xdg: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    """`kill -9` of the daemon while `kyros run plan` follows: the CLI starts a daemon again,
    resumes the stream after the last event it saw, and exits 0 when the retried run succeeds;
    the run's events record the lost attempt and the retry, each event once."""
    from tests.conftest import FAST_QUEUE, start_daemon

    env = kyros_env(
        xdg,
        KYROS_DATABASE_URL=f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/k.db",
        KYROS_RECONNECT_SECONDS="5",
        **FAST_QUEUE,
    )
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN), delay_first_chunk=30))
    fake_openai.default = Reply(text=json.dumps(VALID_PLAN))
    d = start_daemon(env)
    cli = subprocess.Popen(
        [
            *(sys.executable, "-m", "kyros", "run", "plan", "add a flag", "-w", str(workspace)),
            *("--model", "openai/fake", "--api-base", fake_openai.url, "--jsonl"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake_openai.wait_for_requests(1, timeout=90)  # mid-run: the model call is in flight
        d.stop(signal.SIGKILL)
        out, err = cli.communicate(timeout=90)
        assert cli.returncode == 0, err
        assert "Traceback" not in err
        assert "starting one and resuming" in err
        followed = [json.loads(line) for line in out.splitlines()]
        seqs = [e["seq"] for e in followed]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat across the restart
        types = [e["type"] for e in followed]
        assert types[-1] == "run.succeeded"
        lost, retried = types.index("run.attempt_lost"), types.index("run.retried")
        assert types.index("run.started") < lost < retried
        assert followed[retried]["data"]["attempt"] == 2
        assert len(fake_openai.requests) == 2
        stored = d.cli("runs", "events", followed[0]["run_id"], "--jsonl").stdout
        assert [json.loads(line)["seq"] for line in stored.splitlines()] == seqs
    finally:
        cli.kill()
        run_cli(env, "daemon", "stop")
        d.stop()


def test_runs_are_listed_page_by_page_with_before(tmp_path: Path) -> None:
    """Past any one page (``limit`` is at most 1,000), every run is reached by ``before``: the
    pages follow the list's order with no run missed or repeated, also for runs created in the
    same instant; an unknown ``before`` is a clear error."""
    import asyncio
    from datetime import UTC, datetime

    from kyros import settings
    from kyros.core.app import Core
    from kyros.core.store import runs as runs_repo
    from kyros.errors import NotFound

    same_instant = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "c"),
        "XDG_DATA_HOME": str(tmp_path / "d"),
        "XDG_STATE_HOME": str(tmp_path / "s"),
        "XDG_RUNTIME_DIR": str(tmp_path / "r"),
    }
    (tmp_path / "ws").mkdir()

    async def scenario() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
        core = Core(settings.load({"database_url": url}, env=env))
        await core.start(warm_backend=False)
        try:
            made = [
                (await core.runs.create("plan", f"goal {n}", str(tmp_path / "ws"), model="demo"))[
                    "id"
                ]
                for n in range(23)
            ]
            # Six runs created in one instant (the last six listed: a page ends among them):
            # only their ids order them.
            async with core.store.write() as conn:
                for run_id in made[2:8]:
                    await runs_repo.set_fields(conn, run_id, created_at=same_instant)
            everything = await core.runs.list_runs(limit=1000)
            seen: list[str] = []
            before = None
            while True:
                page = await core.runs.list_runs(limit=4, before=before)
                seen += [r["id"] for r in page]
                if len(page) < 4:
                    break
                before = page[-1]["id"]
            assert seen == [r["id"] for r in everything] and sorted(seen) == sorted(made)
            assert seen[-6:] == sorted(made[2:8], reverse=True)
            with pytest.raises(NotFound, match="r_nope"):
                await core.runs.list_runs(before="r_nope")
        finally:
            await core.stop()

    asyncio.run(scenario())


def test_cli_runs_list_before_gives_the_next_page(shared_daemon: Daemon, workspace: Path) -> None:
    with shared_daemon.client() as client:
        for n in range(3):
            client.create_run(
                "plan", {"goal": f"page {n}", "workspace": str(workspace), "model": "demo"}
            )
        page = client.request("GET", "/v1/runs", params={"limit": 1})
        assert page["next_before"] == page["runs"][0]["id"]
    first = json.loads(shared_daemon.cli("runs", "list", "--json", "--limit", "2").stdout)
    listed = first["runs"]
    assert len(listed) == 2 and first["next_before"] == listed[1]["id"]  # the cursor
    rest = json.loads(
        shared_daemon.cli("runs", "list", "--json", "--before", listed[0]["id"]).stdout
    )["runs"]
    assert rest and rest[0]["id"] == listed[1]["id"]
    out = shared_daemon.cli("runs", "list", "--before", "r_nope")
    assert out.returncode == 2 and "no run with id 'r_nope'" in out.stderr
