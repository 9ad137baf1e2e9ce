"""Frame times of the console with 10,000 runs listed and 100 runs streaming tokens, beside
the same console on an empty daemon.

The console runs as ``kyros tui`` does (the app :func:`~kyros.tui.app.create_app` builds, on a
connection :func:`~kyros.tui.connection.open_connection` opens, default poll intervals) in a
real terminal: a ptyprocess pty of :data:`COLS` x :data:`ROWS` whose output this process reads
and discards. A driver started by Textual's ``auto_pilot`` hook, inside the console's process,
measures in the console's own event loop:

- **stall**: a task sleeps :data:`TICK` s in a loop; each time it wakes later than asked, the
  loop was busy (a handler, a paint, a worker thread holding the GIL, a garbage collection)
  for that long. The longest stall bounds every frame: nothing reaches the screen while the
  loop is busy. Judged: the longest stall ≤ 50 ms. Reported: its p99 over every tick.
- **paint**: how long each screen update takes (``Screen._on_timer_update``: layout, render,
  write to the terminal), max and p99 over every paint in the window.

Loaded: the store holds :data:`SEEDED` finished runs, written before the daemon starts
(:func:`benchmarks.common.seed_runs`), and :data:`STREAMING` plan runs stream from a scripted
model that writes tokens for minutes (:mod:`benchmarks.stream_model`: about ten ``model.delta``
events a second each; the daemon runs up to 128 jobs). The daemon lists at most the newest
1,000 runs per call, so the console is handed every seeded run once before the window
(as if it had been open a long time; that merge is reported, not judged); its polls then merge
the newest 1,000 and the running ones every second as usual. The detail pane follows one
streaming run (its events tab: tokens arrive every 0.25 s). Anchor: the same console, the same
window, on an empty daemon. The window is :data:`WINDOW` s (a full poll of 1,000 runs falls in
it), :data:`ROUNDS` rounds each: the maxima are the worst of them, the p99s over all ticks.
Also reported: the merge of the seeded runs, and the longest full garbage collection of the
whole run (the table collects once after a big fill and then freezes what is alive; see
:meth:`~kyros.tui.widgets.runs_table.RunsTable._settle`), both before the window.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PtyScreen,
    Result,
    log,
    make_workspace,
    percentile,
    process_env,
    running_daemon,
    seed_runs,
    temp_base,
    wait_idle,
    xdg_env,
)

SEEDED = 10_000
STREAMING = 100
WINDOW = 16.0
#: Seconds between the console's first poll (and the merge) and the window: the table settles
#: its heap 1 s after a big fill (see the docstring); the window sees the steady state.
LEAD = 3.0
TICK = 0.005
ROUNDS = 2
ROWS, COLS = 48, 160
TARGET_MS = 50.0


# --- inside the console's process ----------------------------------------------------------


def _console(socket: str, preload: str, out: str) -> None:
    """Run the console on ``socket`` in this terminal; measure; write the numbers to ``out``."""
    from textual.pilot import Pilot
    from textual.screen import Screen

    from kyros import settings
    from kyros.tui.app import create_app
    from kyros.tui.connection import open_connection
    from kyros.tui.widgets.run_events import RunEvents

    paints: list[float] = []
    measuring = False
    original = Screen._on_timer_update

    def timed_update(screen: Screen[Any]) -> None:
        started = time.perf_counter()
        original(screen)
        if measuring:
            paints.append(time.perf_counter() - started)

    Screen._on_timer_update = timed_update  # type: ignore[method-assign,assignment]
    collections: list[float] = []  # every full collection's pause, window or not
    collecting: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2 and phase == "start":
            collecting.append(time.perf_counter())
        elif info["generation"] == 2 and collecting:
            collections.append(time.perf_counter() - collecting.pop())

    gc.callbacks.append(on_gc)
    runs = json.loads(Path(preload).read_text()) if preload else []

    async def drive(pilot: Pilot[Any]) -> None:
        nonlocal measuring
        app: Any = pilot.app
        main = app.main
        while main.polls == 0:
            await asyncio.sleep(0.05)
        table = main.runs_table
        merge = 0.0
        if runs:
            started = time.perf_counter()
            table.update_runs(runs)
            merge = time.perf_counter() - started
        streaming = [r for r, run in table.runs.items() if run["status"] == "running"]
        if streaming:
            table.select_run(streaming[0])
            main.detail.show_run(streaming[0])
        await asyncio.sleep(LEAD)
        events = main.detail.query_one(RunEvents)
        seqs_before, polls_before = len(events.seqs), main.polls
        stalls: list[float] = []
        gc_before = len(collections)
        measuring = True
        end = time.perf_counter() + WINDOW
        last = time.perf_counter()
        while last < end:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            stalls.append(max(0.0, now - last - TICK))
            last = now
        measuring = False
        result = {
            "stalls": stalls,
            "paints": paints,
            "merge": merge,
            "rows": table.row_count,
            "known": len(table.runs),
            "running": sum(1 for run in table.runs.values() if run["status"] == "running"),
            "shown": main.detail.run_id,
            "events": len(events.seqs) - seqs_before,
            "polls": main.polls - polls_before,
            "gen2": len(collections) - gc_before,
            "gen2_max": max(collections, default=0.0),
        }
        Path(out).write_text(json.dumps(result))
        await app.action_quit()

    connection = open_connection(settings.load(), f"unix://{socket}", None)
    app = create_app(connection)
    try:
        app.run(auto_pilot=drive)
    finally:
        connection.dispose()


# --- this process --------------------------------------------------------------------------


def _measure(env: dict[str, str], socket: Path, preload: Path | None, base: Path) -> dict[str, Any]:
    out = base / f"frames-{time.monotonic_ns()}.json"
    argv = [
        sys.executable,
        "-c",
        "import sys; from benchmarks.tui_frames import _console; _console(*sys.argv[1:])",
        str(socket),
        str(preload or ""),
        str(out),
    ]
    screen = PtyScreen(argv, env, rows=ROWS, cols=COLS)
    deadline = time.monotonic() + WINDOW + LEAD + 90
    while screen.proc.isalive() and time.monotonic() < deadline:
        screen.drain(0.5)
    status = screen.close(timeout=10)
    if status != 0 or not out.exists():
        tail = b"".join(data for _, data in screen.chunks[-20:]).decode(errors="replace")
        raise RuntimeError(f"the console ended with {status}:\n{tail[-3000:]}")
    return dict(json.loads(out.read_text()))


def _start_streaming(daemon: Any, workspace: Path) -> list[str]:
    from benchmarks.stream_model import MODEL

    ids = []
    with daemon.http() as client:
        for n in range(STREAMING):
            body = {"goal": f"stream {n}", "workspace": str(workspace), "model": MODEL}
            r = client.post("/v1/runs/plan", json=body)
            r.raise_for_status()
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = client.get("/v1/runs", params={"status": "running", "limit": 1000}).json()
            streaming = [run for run in got["runs"] if run["last_seq"] >= 5]
            if len(streaming) >= STREAMING:
                return ids
            time.sleep(0.5)
    raise RuntimeError(f"only {len(streaming)} of {STREAMING} runs streamed within 120 s")


def _preload(url: str, path: Path) -> None:
    """Every finished run in the store, as the daemon's API shows them, into ``path`` (JSON);
    the moving ones are left to the console's polls."""
    from kyros.core.store import runs as runs_repo
    from kyros.core.store.engine import Store
    from kyros.protocol import Run

    async def read() -> list[dict[str, Any]]:
        store = Store(url)
        try:
            async with store.read() as conn:
                rows = await runs_repo.list_runs(conn, limit=SEEDED + STREAMING + 100)
        finally:
            await store.close()
        done = [r for r in rows if r["status"] not in ("queued", "running", "needs_approval")]
        return [Run.model_validate(r).model_dump(mode="json") for r in done]

    path.write_text(json.dumps(asyncio.run(read())))


def _summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    stalls = [s * 1000 for r in rounds for s in r["stalls"]]
    paints = [p * 1000 for r in rounds for p in r["paints"]]
    return {
        "stall_max": max(stalls),
        "stall_p99": percentile(stalls, 99),
        "paint_max": max(paints) if paints else 0.0,
        "paint_p99": percentile(paints, 99) if paints else 0.0,
        "paints": len(paints) / len(rounds),
    }


def run() -> list[Result]:
    empty_rounds: list[dict[str, Any]] = []
    loaded_rounds: list[dict[str, Any]] = []
    with temp_base("kbf") as base:
        tty = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
        empty = base / "empty"
        empty.mkdir()
        env = process_env(
            xdg_env(empty), KYROS_DATABASE_URL=f"sqlite+aiosqlite:///{empty / 'kyros.db'}"
        )
        with running_daemon(env) as daemon:
            wait_idle(daemon.pid)
            for _ in range(ROUNDS):
                empty_rounds.append(_measure({**env, **tty}, daemon.socket, None, base))
        loaded = base / "loaded"
        loaded.mkdir()
        url = f"sqlite+aiosqlite:///{loaded / 'kyros.db'}"
        started = time.perf_counter()
        seed_runs(url, SEEDED)
        log(f"{SEEDED:,} runs written in {time.perf_counter() - started:.1f} s")
        env = process_env(
            xdg_env(loaded),
            KYROS_DATABASE_URL=url,
            KYROS_WORKERS="128",
            KYROS_PLUGINS="benchmarks.stream_model",
        )
        workspace = make_workspace(loaded)
        with running_daemon(env) as daemon:
            wait_idle(daemon.pid)
            _start_streaming(daemon, workspace)
            preload = loaded / "runs.json"
            _preload(url, preload)
            for _ in range(ROUNDS):
                loaded_rounds.append(_measure({**env, **tty}, daemon.socket, preload, base))
            load = os.getloadavg()[0]
    for r in loaded_rounds:
        if r["running"] < STREAMING or r["events"] == 0 or r["rows"] < SEEDED:
            raise RuntimeError(
                f"the window did not see what it should: {r['rows']} rows, "
                f"{r['running']} running, {r['events']} events of the shown run"
            )
    e, k = _summary(empty_rounds), _summary(loaded_rounds)
    last = loaded_rounds[-1]
    log(
        f"loaded: stall max {k['stall_max']:.1f} p99 {k['stall_p99']:.1f} ms, paint max "
        f"{k['paint_max']:.1f} p99 {k['paint_p99']:.1f} ms; empty: stall max "
        f"{e['stall_max']:.1f}, paint max {e['paint_max']:.1f} ms; {last['rows']} rows, "
        f"{last['events']} events shown, {last['polls']} polls, gen2 GCs {last['gen2']}"
    )
    window = (
        f"{ROUNDS} windows of {WINDOW:g} s; pty {COLS}x{ROWS}; {last['rows']:,} rows, "
        f"{last['running']} running, {last['events']} events shown in the last window; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    merge_ms = max(r["merge"] for r in loaded_rounds) * 1000
    settle_ms = max(r["gen2_max"] for r in loaded_rounds) * 1000
    settle_empty_ms = max(r["gen2_max"] for r in empty_rounds) * 1000
    return [
        Result(
            "tui frames: longest event-loop stall, 10k runs + 100 streaming",
            k["stall_max"],
            "ms",
            "same, empty daemon",
            e["stall_max"],
            f"≤ {TARGET_MS:g} ms",
            k["stall_max"] <= TARGET_MS,
            window,
        ),
        Result(
            "tui frames: event-loop stall p99",
            k["stall_p99"],
            "ms",
            "same, empty daemon",
            e["stall_p99"],
            "—",
            None,
            f"over every {TICK * 1000:g} ms tick of the windows",
        ),
        Result(
            "tui frames: longest paint, 10k runs + 100 streaming",
            k["paint_max"],
            "ms",
            "same, empty daemon",
            e["paint_max"],
            f"≤ {TARGET_MS:g} ms",
            k["paint_max"] <= TARGET_MS,
            f"{k['paints']:.0f} paints a window (empty: {e['paints']:.0f})",
        ),
        Result(
            "tui frames: paint p99",
            k["paint_p99"],
            "ms",
            "same, empty daemon",
            e["paint_p99"],
            "—",
            None,
        ),
        Result(
            "tui frames: merging 10k runs into the table at once",
            merge_ms,
            "ms",
            "",
            None,
            "—",
            None,
            "once, before the window (the daemon lists at most 1,000 runs per call)",
        ),
        Result(
            "tui frames: longest full garbage collection, start-up included",
            settle_ms,
            "ms",
            "same, empty daemon",
            settle_empty_ms,
            "—",
            None,
            "the table settles the heap once, 1 s after its first fill (and after each 500 "
            "new rows): one collection, then what is alive is left out of later ones",
        ),
    ]
