"""The help screen (``?``): what each pane shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# kyros console

The console shows the daemon it is connected to (top line): its runs, its agents, the runs
waiting for you, and the selected run in detail. Runs go on in the daemon when you quit.

## Keys

| key | does |
| --- | --- |
| `n` | start a new run (a form: kind, goal, workspace, agent, model, budget) |
| `/` | filter the runs by words in id, status, kind, goal or agent (`esc` leaves) |
| `s` | sort the runs by the next column (a click on a header sorts by it) |
| `↑` `↓` `enter` | select a run: the detail pane follows it live |
| `a` | approve what the run waits on (the approvals pane's run when it has focus) |
| `d` | deny it, with a reason the model is told |
| `x` | cancel the run |
| `p` | apply an implement or pipeline run's change to your working tree |
| `c` | continue a finished run: a new run on its conversation (the form opens) |
| `k` | run the critic on an implement or pipeline run's change (the form opens) |
| `t` | the terminals screen (`esc` comes back to the runs) |
| `ctrl+t` | a new terminal: a shell on the daemon, in the console's directory |
| `o` | the selected run's own terminal (where an implement run's commands run) |
| `u` | usage: what the model calls cost, by model or run, and the newest calls (`esc` comes back) |
| `tab` | next pane |
| `ctrl+p` | command palette: new runs, approve, deny, cancel, terminals, switch daemon… |
| `?` | this help (`esc` closes it) |
| `ctrl+q` | quit (runs go on in the daemon) |

## Terminals

A tab per daemon terminal. While a terminal has the focus every key goes to its program
(full-screen programs such as vim and htop work), except these two:

| key | does |
| --- | --- |
| `ctrl+\\` | leave the terminal: the focus goes to the tab bar (the `detach_key` setting) |
| `ctrl+q` | quit the console (terminals go on in the daemon) |

With the tab bar focused:

| key | does |
| --- | --- |
| `←` `→` | another tab |
| `enter` | type in the terminal again |
| `ctrl+t` or `n` | a new terminal |
| `a` | attach to one of the daemon's terminals (a list to pick from) |
| `w` | close the tab: detach, the program runs on |
| `k` | kill the terminal's program (asks first) and close the tab |
| `esc` | back to the runs |

When output comes faster than the pane can draw it, the pane skips to the newest screen;
`kyros term logs` has all of it.

## Panes

- **Runs**: id, status, kind, goal, agent, cost, age; live.
- **Agents**: each agent's role, model, status and current run.
- **Approvals**: every run waiting for a human, and what it waits on.
- **Run detail**: the events as they come (the model's tokens live), the result (a plan as
  Markdown, an implement run's summary), the diff, the critic's review, the cost, tokens
  and model calls so far (a pipeline's with its stages').

## Usage

What `kyros usage` shows, refreshed every few seconds: the known cost, the calls of unknown
cost (no price known for their model) counted apart, never as $0, and where each cost came
from (*listed* in the price list, *configured* in settings, *reported* by the provider, or
*unknown*). `g` groups by model or by run (a pipeline's row includes its stages' calls),
`r` reads again.

When the daemon stops, the top line says *reconnecting*; the console picks up where it was
when the daemon is back, without losing an event.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and panes, in Markdown."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
