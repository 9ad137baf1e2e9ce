"""Turns per second of the implement run's agent loop against a scripted model (SQLite).

kyros: one implement run of TURNS model turns, each asking for a small ``read_file``, then a
final answer, through the real loop: thread messages and events written per turn, the tool run
through the path policy, the scripted model called through litellm's streaming path. Anchor: the
same number of bare ``litellm.acompletion`` streaming calls to the same scripted model plus the
same ``read_file`` calls — the model and the tool without kyros around them. The difference per
turn is kyros's own overhead (durable writes, events, approvals, loop checks). No fixed target.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, log, temp_base, xdg_env

TURNS = 35  # under the default agent limit of 40 turns


def _reply_factory() -> Any:
    def reply(messages: list[dict[str, Any]]) -> Any:
        done = sum(1 for m in messages if m.get("role") == "tool")
        if done >= TURNS:
            return "read everything"
        line = 1 + done
        args = json.dumps({"path": "main.py", "start_line": line, "end_line": line + 1})
        # Each turn reads the next lines: no call, and no block of calls, repeats (a repeated
        # block of up to four calls is a loop the run halts on).
        return {"tool_calls": [{"id": f"c{done}", "name": "read_file", "arguments": args}]}

    return reply


async def _anchor(model: str, root: Path) -> float:
    """Seconds for TURNS bare streaming calls plus TURNS bare read_file calls."""
    import litellm

    from kyros.core.tools.files import read_file
    from kyros.core.tools.pathpolicy import PathPolicy

    policy = PathPolicy(root)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "read"}]
    t0 = time.perf_counter()
    for _ in range(TURNS):
        stream = await litellm.acompletion(model=model, messages=messages, stream=True)
        async for _chunk in stream:
            pass
        await asyncio.to_thread(read_file, policy, "main.py", 1, 2)
    return time.perf_counter() - t0


async def _kyros(base: Path, model: str, root: Path) -> float:
    from kyros import settings
    from kyros.core.app import Core

    env = xdg_env(base)
    url = f"sqlite+aiosqlite:///{base / 'bench.db'}"
    loaded = settings.load({"database_url": url, "poll_seconds": 0.05}, env=env)
    core = Core(loaded)
    await core.start(warm_backend=False)
    try:
        await asyncio.to_thread(core.backend)
        t0 = time.perf_counter()
        run = await core.runs.create("implement", "read main.py", str(root), model=model)
        while (run := await core.runs.get(run["id"]))["status"] not in ("succeeded", "failed"):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        if run["status"] != "succeeded":
            raise RuntimeError(f"benchmark run failed: {run['error']}")
        if run["output"]["turns"] != TURNS + 1:
            raise RuntimeError(f"expected {TURNS + 1} turns, got {run['output']['turns']}")
    finally:
        await core.stop()
    return elapsed


def run() -> list[Result]:
    from kyros.core.ai.litellm_backend import ScriptedProvider, register_scripted

    model = register_scripted("bench-loop", ScriptedProvider(_reply_factory()))
    with temp_base("kbl") as base:
        root = base / "ws"
        root.mkdir()
        (root / "main.py").write_text("".join(f"print({n})\n" for n in range(TURNS + 2)))
        anchor = asyncio.run(_anchor(model, root))
        measured = asyncio.run(_kyros(base, model, root))
    turns = TURNS + 1
    per_turn_ms = measured / turns * 1000
    anchor_ms = anchor / TURNS * 1000
    log(
        f"agent loop: {turns / measured:.1f} turns/s ({per_turn_ms:.2f} ms/turn); bare model "
        f"call + tool {anchor_ms:.2f} ms; kyros overhead ≈ {per_turn_ms - anchor_ms:.2f} ms/turn"
    )
    return [
        Result(
            "agent loop turns/s (SQLite, scripted model)",
            turns / measured,
            "turns/s",
            "bare litellm call + read_file",
            1 / (anchor / TURNS),
            "reported (overhead per turn in the note)",
            None,
            f"{per_turn_ms - anchor_ms:.2f} ms/turn of kyros overhead "
            f"({per_turn_ms:.2f} vs {anchor_ms:.2f} ms)",
        )
    ]
