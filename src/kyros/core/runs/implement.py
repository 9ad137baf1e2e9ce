"""The implement run: an agent loop with tools, in a worktree of its own, ending in a diff.

Each turn is durable. The model's answer (text and tool calls) is stored as a thread message and
an event before any tool runs; each tool result likewise. A run that is interrupted rebuilds its
conversation from the thread and goes on at the next turn, so no finished turn is ever sent to
the provider again (RELIABILITY D4). A tool call waiting for a human leaves the run in
``needs_approval`` with no job; the answer queues a new job that resumes exactly there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from kyros.core.agents import Profile
from kyros.core.ai.backend import LLMBackend
from kyros.core.ai.demo import DEMO_BANNER
from kyros.core.ai.models import ResolvedModel
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs import loops, memory
from kyros.core.runs.approvals import decide
from kyros.core.runs.executor import RunExecutor
from kyros.core.runs.terminal_commands import TerminalCommands
from kyros.core.store import events as events_repo
from kyros.core.store import threads as threads_repo
from kyros.core.terminals.manager import TerminalManager
from kyros.core.tools.pathpolicy import PathPolicy
from kyros.core.tools.registry import TOOL_CLASS, TOOL_SPECS, Toolbox, parse_arguments
from kyros.core.workspace.gitexec import run_git
from kyros.core.workspace.sandbox import Sandbox, create_sandbox, sandbox_diff
from kyros.errors import KyrosError

#: Tool output kept in an event (the thread keeps all of it).
EVENT_OUTPUT_CHARS = 8192

SYSTEM_PROMPT = """You are a careful software engineer working in a repository through tools.
Rules:
- Paths are relative to the repository root. Read before you change; keep changes minimal.
- Change files with write_file or apply_patch; check your work with run_command (tests, linters).
- You work in a private copy of the repository; the user reviews your diff before it lands.
- When the task is done, answer without any tool call: a short summary of what you changed and
  how you checked it."""


class RunHalted(KyrosError):
    """The agent loop stopped on one of its limits."""

    code = "run_halted"


class ImplementExecutor(RunExecutor):
    """The handler of ``implement`` jobs."""

    def __init__(
        self,
        runs: Any,
        backend: Any,
        *,
        agents: Any,
        sandboxes: Path,
        terminals: TerminalManager | None = None,
        command_timeout: float = 300.0,
    ) -> None:
        super().__init__(runs, backend)
        self.agents = agents
        self.sandboxes = sandboxes
        self.terminals = terminals
        self.command_timeout = command_timeout

    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        profile = await self.agents.profile(run["agent"])
        sandbox = await self._sandbox(run)
        loop = _Loop(self, run, ctx, profile, sandbox)
        outcome = await loop.go()
        if outcome == "paused":
            return {"status": "needs_approval"}
        diff = await asyncio.to_thread(sandbox_diff, sandbox)
        if loop.denied and not diff.strip():
            # Every change the agent tried was refused: that is not a success.
            reason = (
                f"every change was denied: {len(loop.denied)} write call(s) "
                f"({', '.join(sorted(set(loop.denied)))}) were refused and nothing changed; "
                f"agent {profile.name!r} has tools {','.join(sorted(profile.tools))} and "
                f"policy {profile.policy} (`kyros agents edit {profile.name} --tools "
                "read,write,command` lets it write)"
            )
            output = {"summary": loop.final_text, "turns": loop.turns, "denied": loop.denied}
            await self.finish(
                ctx,
                run,
                "failed",
                {"reason": reason, "code": "changes_denied", "denied": len(loop.denied)},
                error=reason,
                output=output,
            )
            return {"status": "failed"}
        output = {
            "summary": loop.final_text,
            # A scripted run says so, like a demo plan (ADR 0007).
            "note": DEMO_BANNER if loop.scripted else None,
            "diff": diff,
            "files": _files_of(diff),
            "sandbox": sandbox.to_json(),
            "branch": sandbox.branch,
            "turns": loop.turns,
            "tool_calls": loop.tool_calls,
        }
        await self.finish(ctx, run, "succeeded", {"output": _brief(output)}, output=output)
        return {"status": "succeeded"}

    async def _sandbox(self, run: dict[str, Any]) -> Sandbox:
        params = run.get("params") or {}
        previous = params.get("sandbox_of")
        if previous:
            # A revision continues in the worktree of the run it revises.
            prior = await self.runs.get(previous)
            record = (prior.get("output") or {}).get("sandbox")
            if record:
                return Sandbox.from_json(record)
        sandbox = await asyncio.to_thread(
            create_sandbox, Path(run["workspace"]), run["id"], self.sandboxes
        )
        data: dict[str, Any] = {
            "root": str(sandbox.root),
            "kind": sandbox.kind,
            "branch": sandbox.branch,
            "note": sandbox.note,
        }
        if sandbox.kind == "worktree":
            dirty = await asyncio.to_thread(_uncommitted, Path(run["workspace"]))
            if dirty:
                # It starts from HEAD: say so, or the user wonders where their edits went.
                data["note"] = (
                    f"{dirty} uncommitted change(s) in {run['workspace']} are not part of the "
                    "run's worktree, which starts from the last commit"
                )
        await self.runs.emit(run["id"], "sandbox.ready", data)
        return sandbox


def _uncommitted(root: Path) -> int:
    done = run_git(root, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    return len([line for line in done.stdout.splitlines() if line.strip()])


def _files_of(diff: str) -> list[str]:
    files = []
    for line in diff.splitlines():
        if line.startswith("+++ ") or line.startswith("--- "):
            path = line[4:].strip()
            if path != "/dev/null":
                path = path[2:] if path[:2] in ("a/", "b/") else path
                if path not in files:
                    files.append(path)
    return files


def _brief(output: dict[str, Any]) -> dict[str, Any]:
    """The final event carries the outcome, not the whole diff (the run row has it)."""
    return {k: v for k, v in output.items() if k not in ("diff", "sandbox")} | {
        "diff_bytes": len(output["diff"])
    }


class _Loop:
    """One pass of the agent loop over a run, from wherever its thread stands."""

    def __init__(
        self,
        executor: ImplementExecutor,
        run: dict[str, Any],
        ctx: JobContext,
        profile: Profile,
        sandbox: Sandbox,
    ) -> None:
        self.x = executor
        self.runs = executor.runs
        self.run = run
        self.ctx = ctx
        self.profile = profile
        self.sandbox = sandbox
        self.toolbox = Toolbox(
            PathPolicy(sandbox.root),
            command_timeout=float(profile.limits.get("command_timeout", executor.command_timeout)),
            # Commands run in daemon terminals tied to the run: `kyros term attach` watches.
            runner=TerminalCommands(
                executor.terminals, executor.runs, run["id"], stopping=lambda: ctx.stopping
            )
            if executor.terminals is not None
            else None,
        )
        self.turns = 0
        self.tool_calls = 0
        self.final_text = ""
        #: Changes (write calls) refused by the policy or a human, when none was allowed.
        self.denied: list[str] = []
        #: Whether the model is the scripted demo (known once :meth:`go` resolved it).
        self.scripted = False
        self.started = time.monotonic()

    async def go(self) -> str:
        """Run turns until the model is done ("done") or a human must answer ("paused")."""
        # The run's model was chosen once, when it was created (kyros.core.ai.choice).
        resolved = self.runs.resolve(self.run["model"], self.run["api_base"])
        self.scripted = resolved.is_demo
        backend = await asyncio.to_thread(self.x.backend)
        await self._open_thread()
        while True:
            history = await self._history()
            own = [m for m in history if m.get("run_id") == self.run["id"]]
            self.turns = sum(1 for m in own if m["role"] == "assistant")
            self.tool_calls = sum(1 for m in own if m["role"] == "tool")
            turn, pending = _unanswered(own)
            if pending:
                if await self._handle_calls(turn, pending, own) == "paused":
                    return "paused"
                continue
            last = own[-1] if own else None
            if last is not None and last["role"] == "assistant":
                self.final_text = last["content"]
                self.denied = _denied_changes(own)
                return "done"
            self._check_limits()
            # Stopping: everything so far is in the thread; the next attempt goes on from here.
            self.ctx.checkpoint()
            history = await self.x.compacted(self.run, self.ctx, history, resolved, backend)
            await self._turn(history, resolved, backend)

    # --- conversation -----------------------------------------------------------------------

    async def _history(self) -> list[dict[str, Any]]:
        async with self.runs.store.read() as conn:
            return await threads_repo.history(conn, self.run["thread_id"])

    async def _open_thread(self) -> None:
        history = await self._history()
        if any(m.get("run_id") == self.run["id"] and m["role"] == "user" for m in history):
            return  # resumed: the task is stated already
        text = await self._task_text()
        async with self.runs.store.write() as conn:
            await self.ctx.fence(conn)
            await threads_repo.append(
                conn, self.run["thread_id"], "user", text, run_id=self.run["id"]
            )

    async def _task_text(self) -> str:
        params = self.run.get("params") or {}
        parts = [f"## Task\n{self.run['goal']}"]
        if params.get("plan_run"):
            plan = await self.runs.get(params["plan_run"])
            markdown = (plan.get("output") or {}).get("markdown")
            if markdown:
                parts.append(f"## Plan to follow\n{markdown}")
        findings = params.get("findings")
        if findings:
            lines = [
                f"- [{f.get('severity')}] {f.get('file') or ''}"
                f"{':' + str(f['line']) if f.get('line') else ''} {f.get('message')}"
                for f in findings
            ]
            parts.append(
                "## A reviewer asked for revisions of your change\n"
                + (params.get("review_summary") or "")
                + "\n"
                + "\n".join(lines)
            )
        return "\n\n".join(parts)

    # --- one model turn ---------------------------------------------------------------------

    def _check_limits(self) -> None:
        limits = self.profile.limits
        if self.turns >= int(limits["max_turns"]):
            raise RunHalted(f"the agent reached its limit of {limits['max_turns']} turns")
        if time.monotonic() - self.started > float(limits["wall_seconds"]):
            raise RunHalted(f"the agent reached its wall-time limit of {limits['wall_seconds']}s")
        # Budgets are checked before every model call, against its worst case (RunSpender).

    async def _turn(
        self, history: list[dict[str, Any]], resolved: ResolvedModel, backend: LLMBackend
    ) -> None:
        turn = self.turns + 1
        system = self.profile.system_prompt or SYSTEM_PROMPT
        messages = [{"role": "system", "content": system}, *memory.to_chat(history, self.run["id"])]
        await self.runs.emit(
            self.run["id"],
            "model.request",
            {"turn": turn, "model": resolved.name, "messages": len(messages)},
        )
        completion = await self.x.call_model(
            self.run, resolved, backend, messages, tools=TOOL_SPECS, turn=turn
        )
        self.run = await self.runs.get(self.run["id"])  # fresh totals (cost so far)
        calls = [call.to_message() for call in completion.tool_calls]
        async with self.runs.store.write() as conn:
            await self.ctx.fence(conn)
            await threads_repo.append(
                conn,
                self.run["thread_id"],
                "assistant",
                completion.text,
                run_id=self.run["id"],
                meta={"turn": turn, "tool_calls": calls} if calls else {"turn": turn},
            )
            event = await events_repo.append(
                conn,
                self.run["id"],
                "model.response",
                {
                    "turn": turn,
                    "text": completion.text,
                    "tool_calls": calls,
                    "tokens_in": completion.tokens_in,
                    "tokens_out": completion.tokens_out,
                    "cost": completion.cost,
                },
            )
        self.runs.bus.publish([event])

    # --- tool calls -------------------------------------------------------------------------

    async def _handle_calls(
        self, turn: int, pending: list[dict[str, Any]], own: list[dict[str, Any]]
    ) -> str:
        for call in pending:
            name = call["function"]["name"]
            raw = call["function"]["arguments"] or "{}"
            # Providers reuse call ids across turns; the turn makes a decision's key unique.
            key = f"{turn}:{call['id']}"
            self._check_loop(own, turn, call["id"], name, raw)
            if self.tool_calls >= int(self.profile.limits["max_tool_calls"]):
                raise RunHalted(
                    f"the agent reached its limit of {self.profile.limits['max_tool_calls']} "
                    "tool calls"
                )
            try:
                args = parse_arguments(name, raw)
            except KyrosError as exc:
                await self._result(call, False, f"error: {exc.message}", "invalid")
                continue
            tool_class = TOOL_CLASS[name]
            verdict = decide(
                policy=self.profile.policy,
                tool_class=tool_class,
                tools=self.profile.tools,
                call_id=key,
                arguments=args,
                allowed_commands=list(self.profile.limits.get("allowed_commands") or []),
                params=self.run.get("params") or {},
            )
            if verdict.decision == "ask":
                await self._pause(key, name, args, tool_class, verdict.reason)
                return "paused"
            if verdict.decision == "deny":
                await self._result(call, False, f"not allowed: {verdict.reason}", "denied")
                continue
            self.ctx.checkpoint()  # a tool started now would be cut off by the shutdown
            result = await self.toolbox.call(name, args)
            await self._result(call, result.ok, result.output, "ran", changed=result.changed)
            self.tool_calls += 1
        return "continue"

    def _check_loop(
        self, own: list[dict[str, Any]], turn: int, call_id: str, name: str, raw: str
    ) -> None:
        recent: list[str] = []
        for message in own:
            meta = message.get("meta") or {}
            for call in meta.get("tool_calls") or []:
                recent.append(
                    loops.signature(call["function"]["name"], call["function"]["arguments"])
                )
                if meta.get("turn") == turn and call["id"] == call_id:
                    break
        # ``recent`` ends with the call being handled: one call or a short cycle repeated.
        size = loops.cycle(recent)
        if size:
            raise RunHalted(loops.describe(recent, size))

    async def _pause(
        self, key: str, name: str, args: dict[str, Any], tool_class: str, why: str
    ) -> None:
        pending = {
            "id": key,
            "kind": "tool_call",
            "tool": name,
            "class": tool_class,
            "arguments": args,
            "reason": why,
        }
        async with self.runs.store.write() as conn:
            await self.ctx.fence(conn)
            events = await self.runs.pause(conn, self.run, pending)
            await self.ctx.finish_in(conn, {"status": "needs_approval"})
        self.runs.bus.publish(events)

    async def _result(
        self,
        call: dict[str, Any],
        ok: bool,
        output: str,
        outcome: str,
        *,
        changed: list[str] | None = None,
    ) -> None:
        async with self.runs.store.write() as conn:
            await self.ctx.fence(conn)
            await threads_repo.append(
                conn,
                self.run["thread_id"],
                "tool",
                output,
                run_id=self.run["id"],
                meta={
                    "tool_call_id": call["id"],
                    "name": call["function"]["name"],
                    "ok": ok,
                    "outcome": outcome,
                },
            )
            event = await events_repo.append(
                conn,
                self.run["id"],
                "tool.result",
                {
                    "call_id": call["id"],
                    "tool": call["function"]["name"],
                    "ok": ok,
                    "outcome": outcome,
                    "output": output[:EVENT_OUTPUT_CHARS],
                    "changed": changed or [],
                },
            )
        self.runs.bus.publish([event])


def _denied_changes(own: list[dict[str, Any]]) -> list[str]:
    """The write tools this run was refused, or [] when any write ran (or none was tried)."""
    denied: list[str] = []
    for message in own:
        meta = message.get("meta") or {}
        if message["role"] != "tool" or TOOL_CLASS.get(meta.get("name", "")) != "write":
            continue
        if meta.get("outcome") == "ran":
            return []
        if meta.get("outcome") == "denied":
            denied.append(str(meta["name"]))
    return denied


def _unanswered(own: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """The turn of this run's latest assistant message and its calls without a result yet."""
    for index in range(len(own) - 1, -1, -1):
        message = own[index]
        if message["role"] == "assistant":
            meta = message.get("meta") or {}
            answered = {
                (m.get("meta") or {}).get("tool_call_id")
                for m in own[index + 1 :]
                if m["role"] == "tool"
            }
            calls = [c for c in meta.get("tool_calls") or [] if c["id"] not in answered]
            return int(meta.get("turn") or 0), calls
    return 0, []
