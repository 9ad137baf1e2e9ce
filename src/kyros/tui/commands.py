"""The command palette's kyros commands (``ctrl+p``): new runs, answers, cancel, terminals,
usage, switch daemon."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from kyros.tui.screens.main import MainScreen

#: (name, help, what it does on the main screen).
COMMANDS: tuple[tuple[str, str, Callable[[MainScreen], None]], ...] = (
    ("New plan run", "Plan a change: the planner reads the workspace and writes a plan",
     lambda s: s.action_new_run("plan")),
    ("New implement run", "An agent changes the code in a worktree; the result is a diff",
     lambda s: s.action_new_run("implement")),
    ("New critic run", "A second model reviews a run's change and scores it",
     lambda s: s.action_new_run("critic")),
    ("New pipeline run", "Plan, implement, then gate on a critic's review",
     lambda s: s.action_new_run("pipeline")),
    ("Approve", "Approve what the selected run waits on", lambda s: s.request("approve")),
    ("Deny", "Deny what the selected run waits on, with a reason",
     lambda s: s.request("deny")),
    ("Cancel run", "Cancel the selected run", lambda s: s.request("cancel")),
    ("Apply run", "Bring the selected run's change into your working tree",
     lambda s: s.request("apply")),
    ("Continue run", "A new run on the selected run's conversation",
     lambda s: s.request("continue")),
    ("Run the critic", "A second model reviews the selected run's change",
     lambda s: s.request("critic")),
    ("New terminal", "A shell on the daemon, in a tab of the terminals screen",
     lambda s: s.action_new_terminal()),
    ("Attach to a terminal", "Pick one of the daemon's terminals and show it in a tab",
     lambda s: s.action_attach_terminal()),
    ("Terminals", "The terminals screen: a tab per attached terminal",
     lambda s: s.action_terminals()),
    ("Run's terminal", "The terminal the selected run's commands run in",
     lambda s: s.action_run_terminal()),
    ("Usage", "What the model calls cost: by model or run, the newest calls, cost sources",
     lambda s: s.action_usage()),
    ("Switch daemon", "Talk to another kyros daemon (unix:// or https:// address)",
     lambda s: s.action_switch_daemon()),
    ("Help", "Keys and panes", lambda s: s.action_help()),
)  # fmt: skip


class KyrosCommands(Provider):
    """The console's own commands, beside Textual's system commands."""

    def _main(self) -> MainScreen | None:
        from kyros.tui.screens.main import MainScreen

        stack = self.app.screen_stack
        return stack[0] if stack and isinstance(stack[0], MainScreen) else None

    def _run(self, do: Callable[[MainScreen], None]) -> None:
        main = self._main()
        if main is not None:
            do(main)

    async def discover(self) -> Hits:
        for name, help_text, do in COMMANDS:
            yield DiscoveryHit(name, partial(self._run, do), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, do in COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self._run, do), help=help_text)
