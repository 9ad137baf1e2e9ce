"""Before a run starts: make sure the daemon sees the provider keys this shell exports.

A daemon keeps the environment it started with (ADR 0017). When this shell holds a provider key
the local daemon lacks, or another value of one, a daemon that a client started in the
background and that is idle is restarted with this shell's environment — a restart interrupts
nothing then; any other daemon is left alone and the user is told the one command to run.
Remote daemons have their own keys: nothing is compared.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kyros.client.api import Client
    from kyros.settings import Loaded


def _say(text: str) -> None:
    sys.stderr.write(f"kyros: {text}\n")
    sys.stderr.flush()


def sync_keys(loaded: Loaded, c: Client) -> Client:
    """The client to start the run with: ``c``, or one of a daemon restarted for the user."""
    if not c.target.local or not loaded.provider_keys:
        return c  # no key of this shell to compare: spares a request per run
    from kyros.client.lifecycle import key_problems, problem_words, restart_local, started_words
    from kyros.errors import KyrosError

    try:
        view = c.daemon()
    except KyrosError:
        return c  # an older daemon without the view: the run says what it lacks, if anything
    problems = key_problems(view, loaded.provider_keys)
    if not problems:
        return c
    names = ", ".join(p.env_var for p in problems)
    if view.get("autostarted") and view.get("idle"):
        from kyros.cli.state import GLOBALS

        c.close()
        _, fresh = restart_local(loaded, GLOBALS.daemon, GLOBALS.token)
        pid = fresh.health()["pid"]
        _say(
            f"restarted the idle background daemon ({started_words(view)}; now pid {pid}) "
            f"so it sees {names} from this shell"
        )
        return fresh
    why = "" if view.get("idle") else f" (not restarted for you: {view.get('activity')})"
    if not view.get("autostarted"):
        why = " (not restarted for you: it was started with `kyros daemon serve`)"
    for problem in problems:
        _say(f"note: {problem_words(view, problem)}{why}")
    return c
