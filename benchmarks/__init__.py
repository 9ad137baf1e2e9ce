"""kyros's benchmarks, each measured beside an anchor in the same run: `python -m benchmarks`.

Every benchmark is a module with ``run() -> list[Result]``; numbers on a shared 2-core machine are
noisy, so each is judged as a ratio to (or beside) something measured under the same load.
"""

#: Run order; `python -m benchmarks NAME…` picks some.
BENCHMARKS = (
    "startup",
    "queue_sqlite",
    "queue_postgres",
    "latency",
    "http_rps",
    "memory",
    "plan_e2e",
    "agent_loop",
    "routing",
    "terminal_io",
    "tui_startup",
    "tui_frames",
    "tui_terminal",
)
