"""What the console's terminal pane sends and draws, without a daemon: key and paste bytes (as
xterm sends them), the output backlog fed in time-boxed slices, and where the daemon's skip of a
flood starts."""

from __future__ import annotations

import pytest

from kyros.core.terminals.skipping import tail_start
from kyros.emulator import TerminalEmulator
from kyros.settings import detach_key_byte
from kyros.tui.terminal_backlog import Backlog
from kyros.tui.terminal_keys import key_bytes, key_name, paste_bytes


@pytest.mark.parametrize(
    ("key", "character", "sent"),
    [
        ("a", "a", b"a"),
        ("A", "A", b"A"),
        ("question_mark", "?", b"?"),
        ("space", " ", b" "),
        ("é", "é", "é".encode()),
        ("enter", "\r", b"\r"),
        ("tab", "\t", b"\t"),
        ("shift+tab", None, b"\x1b[Z"),
        ("escape", "\x1b", b"\x1b"),
        ("backspace", "\x7f", b"\x7f"),
        ("backspace", "\x08", b"\x08"),  # Ctrl+H: kept as typed
        ("ctrl+a", "\x01", b"\x01"),
        ("ctrl+c", None, b"\x03"),  # the kitty protocol gives no character
        ("ctrl+z", "\x1a", b"\x1a"),
        ("ctrl+@", "\x00", b"\x00"),
        ("ctrl+right_square_bracket", "\x1d", b"\x1d"),
        ("ctrl+underscore", "\x1f", b"\x1f"),
        ("alt+x", "x", b"\x1bx"),
        ("alt+shift+x", "X", b"\x1bX"),
        ("ctrl+alt+a", None, b"\x1b\x01"),
        ("up", None, b"\x1b[A"),
        ("down", None, b"\x1b[B"),
        ("right", None, b"\x1b[C"),
        ("left", None, b"\x1b[D"),
        ("home", None, b"\x1b[H"),
        ("end", None, b"\x1b[F"),
        ("shift+up", None, b"\x1b[1;2A"),
        ("ctrl+left", None, b"\x1b[1;5D"),
        ("ctrl+shift+end", None, b"\x1b[1;6F"),
        ("insert", None, b"\x1b[2~"),
        ("delete", None, b"\x1b[3~"),
        ("pageup", None, b"\x1b[5~"),
        ("pagedown", None, b"\x1b[6~"),
        ("ctrl+pagedown", None, b"\x1b[6;5~"),
        ("f1", None, b"\x1bOP"),
        ("f4", None, b"\x1bOS"),
        ("f5", None, b"\x1b[15~"),
        ("f12", None, b"\x1b[24~"),
        ("shift+f1", None, b"\x1b[1;2P"),
        ("ctrl+f5", None, b"\x1b[15;5~"),
        ("shift", None, None),  # a lone modifier sends nothing
        ("f30", None, None),
    ],
)
def test_keys_send_what_xterm_sends(key: str, character: str | None, sent: bytes | None) -> None:
    assert key_bytes(key, character) == sent


def test_application_cursor_keys_change_the_arrows_only() -> None:
    """DECCKM (vim, less, htop): ESC O x for unmodified cursor keys; the rest as before."""
    app = {k: key_bytes(k, None, app_cursor=True) for k in ("up", "down", "home", "end")}
    assert app == {"up": b"\x1bOA", "down": b"\x1bOB", "home": b"\x1bOH", "end": b"\x1bOF"}
    assert key_bytes("ctrl+up", None, app_cursor=True) == b"\x1b[1;5A"
    assert key_bytes("pageup", None, app_cursor=True) == b"\x1b[5~"
    assert key_bytes("a", "a", app_cursor=True) == b"a"


@pytest.mark.parametrize(
    ("setting", "name"),
    [("ctrl-\\", "ctrl+backslash"), ("ctrl-b", "ctrl+b"), ("^]", "ctrl+right_square_bracket"),
     ("ctrl-_", "ctrl+underscore"), ("`", "grave_accent"), ("x", "x")],
)  # fmt: skip
def test_the_detach_key_setting_names_a_textual_key(setting: str, name: str) -> None:
    """The console leaves a terminal with the key `kyros term attach` detaches with; a control
    key's name types the byte the setting says (the round trip through key_bytes)."""
    assert key_name(detach_key_byte(setting)) == name
    if name.startswith("ctrl+"):
        assert key_bytes(name, None) == detach_key_byte(setting)


def test_pastes_send_line_ends_as_enter_and_honour_bracketed_paste() -> None:
    assert paste_bytes("one\ntwo\r\nthree") == b"one\rtwo\rthree"
    assert paste_bytes("ls\n", bracketed=True) == b"\x1b[200~ls\r\x1b[201~"
    # A paste cannot close the bracket early and have the rest run as typed commands.
    assert paste_bytes("x\x1b[201~rm -rf ~\n", bracketed=True) == b"\x1b[200~xrm -rf ~\r\x1b[201~"


def test_the_emulator_reports_the_input_modes_a_program_sets() -> None:
    term = TerminalEmulator(cols=20, rows=5)
    assert not term.application_cursor_keys and not term.bracketed_paste
    term.feed(b"\x1b[?1h\x1b[?2004h")
    assert term.application_cursor_keys and term.bracketed_paste
    term.feed(b"\x1b[?1l\x1b[?2004l")
    assert not term.application_cursor_keys and not term.bracketed_paste


def test_dirty_rows_and_segments_follow_the_output() -> None:
    term = TerminalEmulator(cols=10, rows=4)
    assert term.take_dirty() == {0, 1, 2, 3}  # all of it, at first
    assert term.take_dirty() == set()
    term.feed(b"\x1b[2;1H\x1b[31mred\x1b[0m ok")
    assert term.take_dirty() == {1}
    segments = term.row_segments(1, show_cursor=True)
    assert "".join(s.text for s in segments) == "red ok    "
    assert segments[0].text == "red" and segments[0].style is not None
    assert segments[0].style.color is not None and segments[0].style.color.name == "red"
    cursor = [s for s in segments if s.style is not None and s.style.reverse]
    assert [s.text for s in cursor] == [" "]  # the cursor cell, after "ok"
    assert not any(s.style and s.style.reverse for s in term.row_segments(1))


def test_a_cut_starts_at_a_line_or_an_escape_sequence() -> None:
    lines = b"".join(b"line %d\r\n" % i for i in range(1000))
    start = tail_start(lines, lines=10, max_bytes=64 * 1024)
    assert lines[start:].count(b"\n") == 9 and lines[start:].startswith(b"line 991")
    screenful = b"\x1b[H" + b"\x1b[2;3Hx" * 5000  # cursor-addressed, no newline at all
    start = tail_start(screenful, lines=10, max_bytes=1000)
    assert screenful[start:].startswith(b"\x1b[") and len(screenful) - start <= 1000
    assert tail_start(b"short\r\n", lines=10, max_bytes=1000) == 0


class FakeClock:
    """Each feed takes ``per_byte`` seconds per byte: a slow emulator, deterministically."""

    def __init__(self, per_byte: float) -> None:
        self.now = 0.0
        self.per_byte = per_byte

    def __call__(self) -> float:
        return self.now


def test_output_is_fed_whole_in_time_boxed_slices() -> None:
    term = TerminalEmulator(cols=40, rows=10)
    clock = FakeClock(per_byte=1e-6)
    fed: list[int] = []

    def feed(data: bytes) -> None:
        clock.now += len(data) * clock.per_byte
        fed.append(len(data))
        term.feed(data)

    backlog = Backlog(feed, clock=clock)
    backlog.rate = 1e6
    text = b"".join(b"%d\r\n" % i for i in range(20_000))  # ~100 ms of work at 1 MB/s
    backlog.add(text)
    slices = 0
    while backlog.drain(0.004):
        slices += 1
    assert slices >= 20  # the budget split it: the loop ran other work in between
    assert max(fed) <= 2100  # pieces of ~2 ms
    # Nothing skipped: the daemon already did what skipping a screen needs.
    assert sum(fed) == len(text) and term.display_lines()[-2] == "19999"
