"""A terminal emulator model (pyte underneath): pty bytes in, screen text and styled rows out.

``terminal`` holds :class:`TerminalEmulator` and its byte stream, ``screen`` the pyte screen
with the alternate screen and scrollback, ``style`` how cells become Rich styles and text. It
depends on pyte and Rich only, so the daemon (`kyros term logs`) and the console (its terminal
pane) both use it.
"""

from __future__ import annotations

from kyros.emulator.terminal import TerminalEmulator

__all__ = ["TerminalEmulator"]
