"""An implement run's commands, run in daemon terminals tied to the run.

Each ``run_command`` becomes a terminal session (``run_id`` set, listed by `kyros term ls`), so a
user can attach and watch, or take over, while the agent waits. The model gets the output with
every escape and control byte stripped (S13), head and tail kept within the cap.

When the daemon stops, a running command keeps its terminal through the grace period. One that
a signal ends meanwhile (a service manager signals every process of the daemon's group) is not
reported to the model: the attempt is released and the command runs again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from kyros.core.jobs.handlers import Released
from kyros.core.runs.service import RunService
from kyros.core.terminals import ViewerLagged
from kyros.core.terminals.manager import TerminalManager
from kyros.core.tools.command import Capped, CommandResult

#: Extra time, past a command's own timeout, for its terminal to be killed and drained.
KILL_MARGIN_S = 5.0


class TerminalCommands:
    """A :data:`~kyros.core.tools.registry.CommandRunner` for one run."""

    def __init__(
        self,
        terminals: TerminalManager,
        runs: RunService,
        run_id: str,
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.terminals = terminals
        self.runs = runs
        self.run_id = run_id
        self.stopping = stopping

    async def __call__(
        self, command: str, cwd: Path, timeout: float, max_output: int
    ) -> CommandResult:
        started = time.monotonic()
        session = self.terminals.create(
            ["/bin/sh", "-c", command],
            cwd=str(cwd),
            run_id=self.run_id,
            rows=50,
            cols=200,
            total_seconds=timeout,
        )
        # Attached before the loop can read a byte: the capture misses nothing.
        viewer = session.attach()
        await self.runs.emit(
            self.run_id,
            "terminal.started",
            {"terminal_id": session.id, "command": command, "cwd": str(cwd)},
        )
        capped = Capped(max_output)
        capped.feed(viewer.snapshot)

        async def capture() -> None:
            while True:
                try:
                    data = await viewer.read()
                except ViewerLagged:
                    viewer.resync()  # the replay is not wanted: go on with live output
                    capped.feed(b"\n[... output dropped: it came faster than it was read ...]\n")
                    continue
                if not data:
                    return
                capped.feed(data)

        reader = asyncio.create_task(capture())
        try:
            await asyncio.wait_for(session.exited.wait(), timeout + KILL_MARGIN_S)
            await asyncio.wait_for(reader, KILL_MARGIN_S)
        except TimeoutError:
            await session.kill()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            viewer.detach()
        timed_out = session.ended_by == "total_time"
        code = session.exit_code if session.signal is None else -session.signal
        await self.runs.emit(
            self.run_id,
            "terminal.exited",
            {"terminal_id": session.id, "exit_code": session.exit_code, "signal": session.signal},
        )
        if session.signal is not None and self.stopping():
            raise Released(f"run {self.run_id}: command ended by signal {session.signal} at stop")
        return CommandResult(
            exit_code=None if timed_out else code,
            output=capped.text(),
            timed_out=timed_out,
            truncated_bytes=max(0, capped.omitted),
            duration=time.monotonic() - started,
            timeout=timeout,
        )
