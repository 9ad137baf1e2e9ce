"""`kyros run plan … --json` end to end against a warm daemon and a fake OpenAI-compatible server.

Each run is a fresh CLI process: start-up, daemon discovery, run creation, following the event
stream, the model call over real HTTP to the fake server (an instant, valid plan), validation,
storing, printing. Anchor: `kyros runs list --json` through the same CLI and daemon — CLI
start-up plus one round trip, the part of a plan run that is not planning. No fixed target.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from benchmarks.common import (
    REPO,
    Result,
    log,
    median,
    process_env,
    running_daemon,
    skipped,
    temp_base,
    xdg_env,
)

RUNS = 10
WARMUP = 2
EXAMPLE = REPO / "examples" / "greeter"
PLAN = {
    "summary": "Add a --verbose flag to the greeter CLI.",
    "steps": [
        {
            "title": "Add the flag",
            "detail": "an argparse option in greeter/__main__.py",
            "files": ["greeter/__main__.py"],
            "tests": [],
        },
        {
            "title": "Test it",
            "detail": "cover the flag",
            "files": ["tests/test_greet.py"],
            "tests": [],
        },
    ],
    "risks": [],
}
ANCHOR = "kyros runs list --json"


def _cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "kyros", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"kyros {' '.join(args)} exited {out.returncode}: {out.stderr[-800:]}")
    return elapsed, out.stdout


def run() -> list[Result]:
    try:
        from tests.support.fake_openai import FakeOpenAI, Reply
    except ImportError as exc:
        return [skipped("plan_e2e", f"tests.support.fake_openai unavailable ({exc})", ANCHOR)]
    if not EXAMPLE.is_dir():
        return [skipped("plan_e2e", f"{EXAMPLE} is missing", ANCHOR)]
    with temp_base("kbe") as base, FakeOpenAI(default=Reply(text=json.dumps(PLAN))) as srv:
        workspace = base / "greeter"
        shutil.copytree(EXAMPLE, workspace)
        env = process_env(xdg_env(base))
        plan_args = [
            "run",
            "plan",
            "add a --verbose flag",
            "--workspace",
            str(workspace),
            "--json",
            "--model",
            "openai/fake",
            "--api-base",
            srv.url,
        ]
        with running_daemon(env):
            for _ in range(WARMUP):  # the first run waits for the AI backend to load
                _, stdout = _cli(env, *plan_args)
            if json.loads(stdout)["status"] != "succeeded":
                raise RuntimeError(f"plan run did not succeed: {stdout[:800]}")
            plans, lists = [], []
            for _ in range(RUNS):  # interleaved, so background load hits both alike
                plans.append(_cli(env, *plan_args)[0])
                lists.append(_cli(env, "runs", "list", "--json")[0])
        calls = sum(1 for r in srv.requests if r.path == "/v1/chat/completions")
    value, anchor = median(plans) * 1000, median(lists) * 1000
    log(f"run plan median {value:.0f} ms, runs list median {anchor:.0f} ms, {calls} model calls")
    return [
        Result(
            "plan_e2e: kyros run plan --json",
            value,
            "ms",
            ANCHOR,
            anchor,
            "none (reported)",
            None,
            f"median of {RUNS}; warm daemon; fake OpenAI server, instant reply",
        ),
    ]
