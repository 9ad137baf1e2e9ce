"""`kyros tui` to its first full screen, beside a minimal Textual app, with a warm daemon.

Both programs start as fresh interpreters in a real terminal (a ptyprocess pty of 120x40,
``TERM=xterm-256color``). Their output is kept with the time each read returned it and replayed
into a pyte screen (:class:`benchmarks.common.PtyScreen`); the clock starts right before the
spawn and stops at the read that put the last of a set of texts on the screen:

- kyros (``python -m kyros tui``, finding the daemon as a user's shell would, through the XDG
  runtime dir): the connection bar (``connected``), the runs table's header (``STATUS``), the
  footer (``New run``), and the first poll drawn: the runs pane's title counting the
  :data:`SEEDED` runs and the newest run's id in the table. That is the *first full screen*.
- the anchor (``python app.py``): an App with a Header, a DataTable of :data:`SEEDED` rows
  filled in ``on_mount`` and a Footer: its title, the table's header, its first row and the
  footer (``Quit``).

Also reported, not judged: kyros's *first frame*, the connection bar and the runs table's
header drawn (the footer's keys and the runs may come in later frames). The daemon is started,
left to finish loading (its CPU idle) and asked once before any round (warm); each program runs
once unmeasured, then they alternate for :data:`ROUNDS` rounds and the medians are compared.
Each is quit with ctrl+q and must end (it is killed otherwise). Target: kyros ≤ 2x the anchor.
"""

from __future__ import annotations

import sys

from benchmarks.common import (
    PtyScreen,
    Result,
    log,
    median,
    process_env,
    running_daemon,
    seed_runs,
    temp_base,
    wait_idle,
    xdg_env,
)

ROUNDS = 7
WARMUP = 1
ROWS, COLS = 40, 120
#: Runs in the daemon's store (the console's first poll reads them all).
SEEDED = 100
TARGET = 2.0

MINIMAL_APP = """\
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header


class Minimal(App[None]):
    TITLE = "minimal"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("ID", "STATUS", "KIND", "GOAL")
        for i in range({rows}):
            table.add_row(f"r_{{i:04d}}", "succeeded", "plan", f"goal number {{i}}")


if __name__ == "__main__":
    Minimal().run()
"""


def _time(argv: list[str], env: dict[str, str], marks: list[list[str]]) -> list[float]:
    """Seconds from the spawn until each group of ``marks`` is on the screen, in order."""
    screen = PtyScreen(argv, env, rows=ROWS, cols=COLS)
    try:
        return screen.wait_for(marks)
    finally:
        status = screen.close()
        if status != 0:
            raise RuntimeError(f"{argv[-1]} ended with {status} after ctrl+q:\n{screen.text()}")


def run() -> list[Result]:
    with temp_base("kbc") as base:
        url = f"sqlite+aiosqlite:///{base / 'kyros.db'}"
        seed_runs(url, SEEDED, days=2)
        env = process_env(xdg_env(base), KYROS_DATABASE_URL=url)
        tty_env = {**env, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        tty_env.pop("NO_COLOR", None)
        app = base / "minimal_app.py"
        app.write_text(MINIMAL_APP.format(rows=SEEDED))
        with running_daemon(env) as daemon:
            wait_idle(daemon.pid)  # its AI backend loaded: a daemon that has been up a while
            with daemon.http() as client:  # warm: the routes and the store have answered once
                runs = client.get("/v1/runs", params={"limit": 1}).json()["runs"]
            newest = runs[0]["id"]
            kyros_argv = [sys.executable, "-m", "kyros", "tui"]
            first_frame = ["connected", "STATUS"]
            kyros_marks = [first_frame, [*first_frame, "New run", f"Runs · {SEEDED}", newest]]
            anchor_argv = [sys.executable, str(app)]
            anchor_marks = [["minimal", "STATUS", "r_0000", "Quit"]]
            for _ in range(WARMUP):
                _time(kyros_argv, tty_env, kyros_marks)
                _time(anchor_argv, tty_env, anchor_marks)
            firsts, fulls, anchors = [], [], []
            for _ in range(ROUNDS):
                first, full = _time(kyros_argv, tty_env, kyros_marks)
                firsts.append(first)
                fulls.append(full)
                anchors.append(_time(anchor_argv, tty_env, anchor_marks)[0])
    full_ms, first_ms, anchor_ms = (median(v) * 1000 for v in (fulls, firsts, anchors))
    log(
        "kyros tui full screen ms "
        + " ".join(f"{v * 1000:.0f}" for v in fulls)
        + "; minimal app "
        + " ".join(f"{v * 1000:.0f}" for v in anchors)
    )
    return [
        Result(
            "tui startup: kyros tui to the first full screen",
            full_ms,
            "ms",
            "minimal Textual app, full screen",
            anchor_ms,
            f"ratio ≤ {TARGET:g}",
            full_ms <= TARGET * anchor_ms,
            f"median of {ROUNDS}, alternating; pty {COLS}x{ROWS}; warm daemon with {SEEDED} "
            "runs; full = bar, table, footer and the first poll's runs drawn",
        ),
        Result(
            "tui startup: kyros tui to its first frame",
            first_ms,
            "ms",
            "minimal Textual app, full screen",
            anchor_ms,
            "—",
            None,
            "the bar and the runs table's header drawn",
        ),
    ]
