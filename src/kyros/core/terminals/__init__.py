"""Terminals owned by the daemon: commands on ptys that outlive the clients watching them.

``manager`` creates, finds and ends them; ``session`` runs one pty without blocking the event
loop and fans its output out to viewers; ``ring`` keeps each one's scrollback in bounded memory.
Sessions pass bytes through untouched; :mod:`kyros.emulator` interprets them into a screen,
for `kyros term logs` and the console.
"""

from __future__ import annotations

from kyros.core.terminals.manager import TerminalManager, default_shell, terminal_env
from kyros.core.terminals.ring import ScrollbackRing, Viewer, ViewerLagged
from kyros.core.terminals.session import TerminalSession

__all__ = [
    "ScrollbackRing",
    "TerminalManager",
    "TerminalSession",
    "Viewer",
    "ViewerLagged",
    "default_shell",
    "terminal_env",
]
