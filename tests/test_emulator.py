"""The terminal emulator model: screen text, alternate screen, styles, escapes (S13), robustness.

Everything is fed real bytes; one test runs a real pager in a real pty.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ptyprocess import PtyProcess
from pyte.screens import wcwidth
from rich.cells import cell_len
from rich.color import Color
from rich.style import Style
from rich.text import Text

from kyros.emulator import TerminalEmulator

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def emulator(data: bytes = b"", cols: int = 80, rows: int = 24, **kw: int) -> TerminalEmulator:
    term = TerminalEmulator(cols=cols, rows=rows, **kw)
    term.feed(data)
    return term


def style_at(line: Text, offset: int) -> Style:
    """The style of one character of a rendered row (spans combined, as Rich would)."""
    style = Style.null()
    for span in line.spans:
        if span.start <= offset < span.end:
            style += span.style if isinstance(span.style, Style) else Style.parse(span.style)
    return style


def assert_clean(term: TerminalEmulator) -> None:
    """No control character (ESC, C0, C1) anywhere the emulator's text goes."""
    outputs = [term.text(), *term.display_lines(), *(t.plain for t in term.rich_lines(True))]
    for text in outputs:
        assert not CONTROL.search(text.replace("\n", "")), repr(text)
    assert not CONTROL.search(term.title)


# -- plain text -----------------------------------------------------------------------------------


def test_plain_output_and_wrapping() -> None:
    term = emulator(b"hello\r\nworld\r\n", cols=10, rows=4)
    assert term.display_lines() == ["hello", "world", "", ""]
    assert term.cursor == (2, 0)

    term.feed(b"abcdefghijKLM")
    assert term.display_lines()[2:] == ["abcdefghij", "KLM"]
    assert term.cursor == (3, 3)


def test_cursor_movement() -> None:
    term = emulator(b"\x1b[5;10HX")
    assert term.display_lines()[4] == " " * 9 + "X"
    assert term.cursor == (4, 10)
    term.feed(b"\x1b[2A\x1b[3DY\x1b[1;1HZ\x1b[3G*")
    assert term.display_lines()[2] == " " * 7 + "Y"
    assert term.display_lines()[0] == "Z *"
    term.feed(b"\x1b[99;99H")
    assert term.cursor == (23, 79)


def test_clear_screen_and_erase_line() -> None:
    term = emulator(b"one\r\ntwo\r\nthree")
    term.feed(b"\x1b[H\x1b[2J")
    assert term.display_lines() == [""] * 24
    assert term.cursor == (0, 0)
    term.feed(b"keep this\x1b[5D\x1b[K")
    assert term.display_lines()[0] == "keep"


def test_carriage_return_progress_overwrite() -> None:
    term = emulator(b"progress 10%\rprogress 55%\rprogress 100%\r\ndone.\rok\x1b[K\r\n")
    assert term.display_lines()[:3] == ["progress 100%", "ok", ""]
    assert term.text() == "progress 100%\nok"


def test_tabs_and_backspace() -> None:
    term = emulator(b"a\tb\x08c")
    assert term.display_lines()[0] == "a       c"


# -- history --------------------------------------------------------------------------------------


def test_history_keeps_what_scrolled_off() -> None:
    lines = [f"line {n}" for n in range(1, 201)]
    term = emulator("\r\n".join(lines).encode())
    assert term.history_lines() == lines[:176]
    assert term.display_lines() == lines[176:]
    assert term.text() == "\n".join(lines)
    assert term.text(include_history=False) == "\n".join(lines[176:])


def test_history_is_bounded_and_erased_by_ed3() -> None:
    term = emulator(b"".join(b"%d\r\n" % n for n in range(500)), rows=10, scrollback=50)
    history = term.history_lines()
    assert len(history) == 50
    assert history[-1] == str(500 - 10)
    term.feed(b"\x1b[3J")  # `clear` sends this: the scrollback goes, the screen stays
    assert term.history_lines() == []
    assert term.display_lines()[0] == "491"


def test_resize_keeps_the_cursor_row_on_screen() -> None:
    term = emulator(b"".join(b"row %d\r\n" % n for n in range(20)) + b"prompt$ ")
    term.resize(rows=10, cols=40)
    assert (term.rows, term.cols) == (10, 40)
    assert term.display_lines()[-1] == "prompt$"
    assert term.cursor == (9, 8)
    assert term.history_lines() == [f"row {n}" for n in range(11)]
    term.resize(rows=30, cols=100)
    term.feed(b"x" * 100)
    assert term.display_lines()[9] == "prompt$ " + "x" * 92


# -- alternate screen -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [1049, 1047, 47])
def test_alternate_screen_restores_the_main_screen(mode: int) -> None:
    term = emulator(b"".join(b"shell line %d\r\n" % n for n in range(30)) + b"\x1b[33m$ ")
    before_lines, before_cursor = term.display_lines(), term.cursor
    before_history = term.history_lines()
    assert not term.in_alternate_screen

    term.feed(b"\x1b[?%dh" % mode)
    assert term.in_alternate_screen
    assert term.display_lines() == [""] * 24
    # A full-screen program: many full screens of output, scrolling, colours, a status line.
    term.feed(
        b"\x1b[H\x1b[0m" + b"".join(b"\x1b[7mfull screen %d\x1b[0m\r\n" % n for n in range(200))
    )
    term.feed(b"\x1b[24;1H-- status --")
    assert term.display_lines()[-1] == "-- status --"

    term.feed(b"\x1b[?%dl" % mode)
    assert not term.in_alternate_screen
    assert term.display_lines() == before_lines
    assert term.cursor == before_cursor
    assert term.history_lines() == before_history
    assert "full screen" not in term.text()
    term.feed(b"after")  # the cursor's attributes came back too
    line = term.rich_lines()[before_cursor[0]]
    assert style_at(line, before_cursor[1]).color == Color.parse("yellow")


def test_resize_inside_the_alternate_screen() -> None:
    term = emulator(b"".join(b"main %d\r\n" % n for n in range(23)) + b"$ ")
    term.feed(b"\x1b[?1049h\x1b[Hfull screen")
    term.resize(rows=12, cols=60)
    assert term.display_lines()[0] == "full screen"
    term.feed(b"\x1b[?1049l")
    assert term.display_lines()[-1] == "$"
    assert term.display_lines()[0] == "main 12"
    assert term.history_lines()[-1] == "main 11"


def _read_until(proc: PtyProcess, term: TerminalEmulator, done: Callable[[], bool]) -> bool:
    """Feed the emulator from the pty until ``done()``; False at EOF or after 10 s without it."""
    deadline = time.monotonic() + 10
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([proc.fd], [], [], min(remaining, 0.2))
        if not ready:
            continue
        try:
            chunk = os.read(proc.fd, 65536)
        except OSError:  # EIO: the child exited and the pty is drained
            return done()
        if not chunk:
            return done()
        term.feed(chunk)
    return True


def _pager() -> tuple[list[str], bytes, bool] | None:
    """A full-screen pager on this machine: argv prefix, the keys that quit it, alt screen?"""
    if shutil.which("less"):
        return ["less"], b"q", True
    if shutil.which("vim"):
        return ["vim", "-u", "NONE", "-R"], b":q!\r", True
    if shutil.which("more"):
        return ["more"], b"q", False
    return None


def test_a_real_pager_in_a_real_pty(tmp_path: Path) -> None:
    pager = _pager()
    if pager is None:
        pytest.skip("neither less, vim nor more is installed: no full-screen program to run")
    argv, quit_keys, uses_alternate_screen = pager
    text_file = tmp_path / "numbers.txt"
    text_file.write_text("".join(f"numbered line {n:03d}\n" for n in range(1, 201)))
    env = {
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LESS": "",  # no -X from the environment: less must use the alternate screen
        "LESSHISTFILE": "-",
    }
    script = 'echo BEFORE-LESS; "$@"; echo AFTER-LESS'
    term = TerminalEmulator(cols=80, rows=24)
    proc = PtyProcess.spawn(
        ["sh", "-c", script, "sh", *argv, str(text_file)],
        dimensions=(24, 80),
        env=env,
        cwd=str(tmp_path),
    )
    try:
        # less does not home the cursor on entering the alternate screen: it starts drawing on
        # the row below BEFORE-LESS and its 24th row scrolls the page up by one. Under load the
        # draw arrives in several reads, so wait for the whole page (its last line), not a part.
        shown = _read_until(proc, term, lambda: "numbered line 023" in term.display_lines())
        assert shown, term.display_lines()
        assert term.in_alternate_screen == uses_alternate_screen
        if uses_alternate_screen:
            top = ["numbered line 001", "numbered line 002"]
            assert _read_until(proc, term, lambda: term.display_lines()[:2] == top), (
                term.display_lines()
            )
        else:
            assert "numbered line 001" in term.display_lines()

        proc.write(quit_keys)
        assert _read_until(proc, term, lambda: "AFTER-LESS" in term.text()), term.text()
        _read_until(proc, term, lambda: not proc.isalive())  # drain what is left
        if uses_alternate_screen:
            assert not term.in_alternate_screen
            assert term.display_lines()[:3] == ["BEFORE-LESS", "AFTER-LESS", ""]
            assert term.history_lines() == []
            assert "numbered line" not in term.text()
        else:
            assert term.text().startswith("BEFORE-LESS")
        assert_clean(term)
    finally:
        if proc.isalive():
            proc.terminate(force=True)
        proc.close(force=True)


# -- styles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sgr", "expected"),
    [
        (b"31", Style(color="red")),
        (b"33", Style(color="yellow")),  # pyte calls it brown
        (b"91", Style(color="bright_red")),
        (b"93", Style(color="bright_yellow")),
        (b"105", Style(bgcolor="bright_magenta")),
        (b"38;5;208", Style(color="#ff8700")),
        (b"38;2;1;2;3", Style(color="#010203")),
        (b"48;5;17", Style(bgcolor="#00005f")),
        (b"48;2;255;255;255", Style(bgcolor="#ffffff")),
        (b"38:5:208", Style(color="#ff8700")),  # colon sub-parameters
        (b"38:2::1:2:3", Style(color="#010203")),
        (b"1;4;7", Style(bold=True, underline=True, reverse=True)),
        (b"3;9;5", Style(italic=True, strike=True, blink=True)),
        (b"1;31;42", Style(bold=True, color="red", bgcolor="green")),
        (b"4:3", Style(underline=True)),
        (b"0", Style()),
    ],
)
def test_sgr_becomes_rich_styles(sgr: bytes, expected: Style) -> None:
    term = emulator(b"plain \x1b[" + sgr + b"mstyled\x1b[0m plain")
    line = term.rich_lines()[0]
    assert line.plain == "plain styled plain" + " " * 62
    assert style_at(line, 0) == Style.null()
    assert style_at(line, 8) == expected
    assert style_at(line, 14) == Style.null()


def test_sgr_resets_and_key_modifier_sequences() -> None:
    term = emulator(b"\x1b[1;31mA\x1b[22mB\x1b[39mC\x1b[>4;2mD\x1b[mE")
    line = term.rich_lines()[0]
    assert style_at(line, 0) == Style(bold=True, color="red")
    assert style_at(line, 1) == Style(color="red")
    assert style_at(line, 2) == Style.null()
    assert style_at(line, 3) == Style.null()  # CSI > 4;2 m sets key modifiers, not underline
    assert line.plain.startswith("ABCDE")


def test_cursor_cell_is_reversed_when_shown() -> None:
    term = emulator(b"ab\x1b[1D")
    assert style_at(term.rich_lines(show_cursor=True)[0], 1) == Style(reverse=True)
    assert style_at(term.rich_lines()[0], 1) == Style.null()
    term.feed(b"\x1b[?25l")  # the program hid it
    assert not term.cursor_visible
    assert style_at(term.rich_lines(show_cursor=True)[0], 1) == Style.null()


def test_rich_lines_are_exactly_as_wide_as_the_screen() -> None:
    term = emulator(b"\x1b[44m" + "中文 ok é\u0301 ❤️ 😀".encode() + b"\x1b[0m x", cols=30, rows=3)
    for line in term.rich_lines(show_cursor=True):
        assert cell_len(line.plain) == 30
        assert line.end == ""


def test_a_colourful_screen_renders_every_cells_style() -> None:
    # How fast this renders is the console benchmarks' to say (benchmarks/tui_terminal.py,
    # tui_frames.py); here, that the cache behind the fast path gives what was drawn.
    term = TerminalEmulator(cols=200, rows=50)
    cells = b"".join(
        b"\x1b[38;5;%d;48;2;%d;%d;0;%dm%s" % (n % 256, n % 200, n % 7, 1 + n % 9, b"ab\xe4\xb8\xad")
        for n in range(2600)
    )
    term.feed(cells)
    first = term.rich_lines(show_cursor=True)
    assert len(first[10].spans) > 40
    again = term.rich_lines(show_cursor=True)
    assert [line.plain for line in again] == [line.plain for line in first]
    assert [line.spans for line in again] == [line.spans for line in first]


def test_line_drawing_charset() -> None:
    term = emulator(b"\x1b(0lqqk\x1b(B x\x0eq\x0f")
    assert term.display_lines()[0] == "┌──┐ xq"  # SO selects G1 = ASCII, as in xterm


# -- wide characters ------------------------------------------------------------------------------


def test_wide_characters_keep_cell_alignment() -> None:
    term = emulator("中文 ok\r\n|x|".encode(), cols=20, rows=3)
    assert term.display_lines()[0] == "中文 ok"
    assert term.cursor == (1, 3)
    line = term.rich_lines()[0]
    assert line.plain == "中文 ok" + " " * 13
    assert cell_len(line.plain) == 20
    term.feed(b"\x1b[1;6HX")  # column 6 is right after "中文 "
    assert term.display_lines()[0] == "中文 Xk"


def test_overwriting_half_a_wide_character() -> None:
    term = emulator("中文".encode() + b"\x1b[1;2HX", cols=10, rows=2)
    assert term.display_lines()[0] == " X文"
    assert cell_len(term.rich_lines()[0].plain) == 10


def test_wide_character_in_the_last_column_wraps() -> None:
    term = emulator(b"abcd" + "中".encode(), cols=5, rows=3)
    assert term.display_lines()[:2] == ["abcd", "中"]
    assert term.cursor == (1, 2)


def test_combining_and_zero_width_characters_do_not_lose_text() -> None:
    term = emulator("e\u0301 a\u200db ❤\ufe0f end\x01 more".encode())
    assert term.display_lines()[0] == "é ab ❤ end more"


# -- escapes that must go nowhere (S13) -----------------------------------------------------------


@pytest.mark.parametrize(
    "sequence",
    [
        b"\x1b]52;c;c2VjcmV0IGNsaXBib2FyZA==\x07",  # OSC 52, BEL
        b"\x1b]52;c;c2VjcmV0IGNsaXBib2FyZA==\x1b\\",  # OSC 52, ST
        "\u009d52;c;c2VjcmV0\u009c".encode(),  # C1 OSC and ST
        b"\x1b]8;;http://evil.example/\x1b\\",  # hyperlink
        b"\x1b]7;file://host/etc\x07",  # cwd
        b"\x1b]10;?\x07",  # colour query
        b"\x1bP1$tx=secret\x1b\\",  # DCS
        b"\x1bPq#0;2;0;0;0#1!20~-\x1b\\",  # sixel
        "\u0090+q544e\u009c".encode(),  # C1 DCS
        b"\x1b_Gf=100,a=T;secret\x1b\\",  # APC (kitty graphics)
        b"\x1b^privacy message\x1b\\",  # PM
        b"\x1bXstart of string\x1b\\",  # SOS
        "\u009fapc\u009c".encode(),
    ],
)
def test_string_sequences_are_consumed(sequence: bytes) -> None:
    term = emulator(b"before " + sequence + b"after")
    assert term.display_lines()[0] == "before after"
    assert_clean(term)
    # The same, split at every byte.
    term = TerminalEmulator()
    for byte in b"before " + sequence + b"after":
        term.feed(bytes([byte]))
    assert term.display_lines()[0] == "before after"


def test_title_is_recorded_and_never_shown() -> None:
    term = emulator(b"\x1b]0;first title\x07x\x1b]2;second\x1b\\y\x1b]1;icon only\x07z")
    assert term.title == "second"
    assert term.text() == "xyz"
    term.feed(b"\x1b]2;evil\x1b[2Jtitle\x07")  # an ESC ends the title; the rest is sequence
    assert term.title == "evil"
    term.feed(b"\x1b]2;" + b"A" * 5000 + b"\x07")  # oversized: ignored
    assert term.title == "evil"
    assert_clean(term)


def test_unterminated_osc_does_not_swallow_later_output() -> None:
    term = emulator(b"\x1b]52;c;aaaa" + b"b" * 100_000 + b"\x1b[1mvisible\x1b[0m")
    assert term.display_lines()[0] == "visible"


def test_c1_controls_never_leak() -> None:
    term = emulator(b"old text")
    term.feed(b"\x9b2J")  # a raw 8-bit byte is invalid UTF-8: replacement char, not a CSI
    assert term.display_lines()[0] == "old text\ufffd2J"
    term.feed("\u009b2J".encode())  # U+009B is CSI
    assert term.display_lines() == [""] * 24
    term.feed("a\u0085b\u0084c\u009cd\u0080e".encode())
    assert term.text() == " " * 11 + "abcde"  # ED leaves the cursor where it was
    assert_clean(term)


def test_nothing_reaches_the_real_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    term = emulator(
        b"\x1b]52;c;c2VjcmV0\x07\x1b]0;title\x07\x07\x1b[c\x1b[6n\x1b[>c\x1b[?1049h\x1b[2J"
        + b"\x1bPq#0!20~\x1b\\\x1b[?1000h\x1b[?2004h\x1b[?1049l"
    )
    term.rich_lines(show_cursor=True)
    term.text()
    assert capfd.readouterr() == ("", "")
    assert term.title == "title"


def test_malformed_sequences_are_absorbed() -> None:
    term = emulator(
        b"\x1b[c\x1b[6n\x1b[5;6n\x1b[1;2;3;4H\x1b[?1;2r\x1b[\xc2\xb2J\x1b[9K"
        + b"\x1b["
        + b"9" * 5000
        + b"C"
        + b"\x1b[?3h\x1b%@"  # 132 columns; leave UTF-8
        + "still here é".encode()
    )
    assert "still here é" in term.text()
    assert term.cols == 80
    assert_clean(term)


# -- answers to the queries a program waits for ------------------------------------------------


def answering(
    data: bytes = b"", cols: int = 80, rows: int = 24
) -> tuple[TerminalEmulator, list[bytes]]:
    """An emulator that answers queries, fed ``data``, and the answers it gave so far."""
    replies: list[bytes] = []
    term = TerminalEmulator(cols=cols, rows=rows, on_reply=replies.append)
    term.feed(data)
    return term, replies


def test_cursor_position_status_and_device_attributes_are_answered() -> None:
    term, replies = answering(b"\x1b[3;7Hab\x1b[6n")
    assert replies == [b"\x1b[3;9R"]  # 1-based: row 3, column 9 after two glyphs at column 7
    term.feed(b"\r\n\x1b[?6n\x1b[5n\x1b[c\x1b[0c")
    assert replies[1:] == [b"\x1b[?4;1R", b"\x1b[0n", b"\x1b[?62;22c", b"\x1b[?62;22c"]
    assert term.display_lines()[2] == " " * 6 + "ab"  # the queries draw nothing
    assert_clean(term)


def test_cursor_report_waiting_to_wrap_and_after_a_resize() -> None:
    term, replies = answering(b"x" * 10 + b"\x1b[6n", cols=10, rows=3)
    assert replies == [b"\x1b[1;10R"]  # pending wrap: still the last column, as xterm
    term.feed(b"y\x1b[6n")
    assert replies[-1] == b"\x1b[2;2R"
    term.resize(5, 40)
    term.feed(b"\x1b[99;99H\x1b[6n")
    assert replies[-1] == b"\x1b[5;40R"


def test_cursor_report_honours_origin_mode() -> None:
    # Scrolling region rows 5-10; in origin mode rows count from its top, as xterm reports them.
    term, replies = answering(b"\x1b[5;10r\x1b[?6h\x1b[2;3H\x1b[6n\x1b[?6n")
    assert term.cursor == (5, 2)  # screen row 6 = region row 2
    assert replies == [b"\x1b[2;3R", b"\x1b[?2;3R"]
    term.feed(b"\x1b[?6l\x1b[7;4H\x1b[6n")  # origin mode off: screen rows again
    assert replies[-1] == b"\x1b[7;4R"
    term.feed(b"\x1b[r\x1b[?6h\x1b[3;3H\x1b[6n")  # origin mode without a region: the screen
    assert replies[-1] == b"\x1b[3;3R"


@pytest.mark.parametrize(
    "query",
    [
        b"\x1b[>c",  # secondary DA
        b"\x1b[>0c",
        b"\x1b[=c",  # tertiary DA
        b"\x1b[1c",  # DA with a parameter other than 0
        b"\x1b[?15n",  # printer status
        b"\x1b[?26n",  # keyboard status
        b"\x1b[6;1n",
        b"\x1b[>6n",
        b"\x1b[?5n",
        b"\x1b[?1$p",  # DECRQM
        b"\x1b[4$p",
        b"\x1b[>q",  # XTVERSION
        b"\x1b[>0q",
        b"\x1b[21t",  # title report
        b"\x1b[14t",  # window size in pixels
        b"\x1b[18t",
        b"\x1b[x",  # DECREQTPARM
        b"\x1b[?u",  # kitty keyboard flags
        b"\x1bP$qm\x1b\\",  # DECRQSS
        b"\x1bP+q544e\x1b\\",  # XTGETTCAP
        b"\x1b]10;?\x07",  # colour queries
        b"\x1b]11;?\x1b\\",
        b"\x1b]4;1;?\x07",
        b"\x1bZ",  # DECID
        b"\x05",  # ENQ (answerback)
    ],
)
def test_other_queries_are_not_answered(query: bytes) -> None:
    term, replies = answering(b"a" + query + b"b")
    assert replies == []
    for cut in range(1, len(query)):  # split anywhere: still no answer
        term.feed(query[:cut])
        term.feed(query[cut:])
    assert replies == []
    assert term.display_lines()[0] == "ab"


def test_a_query_split_across_feeds_is_answered_once() -> None:
    queries = b"\x1b[6n\x1b[?6n\x1b[5n\x1b[c\x1b[0c\x1b[>c\x1b[?1$p"
    expected = [b"\x1b[1;3R", b"\x1b[?1;3R", b"\x1b[0n", b"\x1b[?62;22c", b"\x1b[?62;22c"]
    data = b"ok" + queries + b"!"
    for cut in range(len(data)):
        term, replies = answering(data[:cut])
        term.feed(data[cut:])
        assert replies == expected, cut
        assert term.display_lines()[0] == "ok!", cut
    term, replies = answering()
    for byte in data:  # one byte a feed
        term.feed(bytes([byte]))
    assert replies == expected
    # The answer tells where the cursor was when the query's last byte came.
    term, replies = answering(b"abc\x1b[")
    term.feed(b"6n")
    assert replies == [b"\x1b[1;4R"]


def test_answers_follow_the_output_in_order_and_c1_csi() -> None:
    term, replies = answering("\u009b6nab\x1b[6n\r\n\u009bc".encode())
    assert replies == [b"\x1b[1;1R", b"\x1b[1;3R", b"\x1b[?62;22c"]
    assert term.display_lines()[:2] == ["ab", ""]


def test_without_a_callback_nothing_is_answered_and_the_screen_is_the_same(
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = b"one\x1b[6n\x1b[c two\x1b[5n"
    quiet = emulator(data)
    term, replies = answering(data)
    assert replies == [b"\x1b[1;4R", b"\x1b[?62;22c", b"\x1b[0n"]
    assert quiet.display_lines() == term.display_lines()
    assert capfd.readouterr() == ("", "")
    with pytest.raises(TypeError, match="on_reply must be callable"):
        TerminalEmulator(on_reply=b"x")  # type: ignore[arg-type]


def test_an_unfinished_sequence_held_at_a_chunk_end_still_draws_after_it() -> None:
    # A CSI cut at the chunk's end is held, not lost: the next chunk completes it.
    term, replies = answering(b"red \x1b[1;3")
    term.feed(b"1mword\x1b[0m \x1b[")
    term.feed(b"6n")
    assert term.display_lines()[0] == "red word"
    assert term.rich_lines()[0].spans[0].style == Style(bold=True, color="red")
    assert replies == [b"\x1b[1;10R"]
    # An overlong one goes on to the parser, which drops it; no answer, later text drawn.
    term.feed(b"\x1b[" + b"1;" * 300)
    term.feed(b"6nmore")
    assert replies == [b"\x1b[1;10R"]
    assert "more" in term.display_lines()[0]


# -- robustness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes_never_raise(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    term = TerminalEmulator(cols=rng.randint(1, 120), rows=rng.randint(1, 40))
    data = rng.randbytes(300_000)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 100, 4096])
        term.feed(data[pos : pos + step])
        pos += step
        if rng.random() < 0.01:
            term.resize(rows=rng.randint(1, 40), cols=rng.randint(1, 120))
    assert_clean(term)
    for line in term.rich_lines(show_cursor=True):
        assert sum(map(wcwidth, line.plain)) == term.cols


FRAGMENTS = [
    b"\x1b",
    b"[",
    b"?",
    b"1049",
    b"47",
    b"25",
    b";",
    b"h",
    b"l",
    b"m",
    b"H",
    b"J",
    b"K",
    b"r",
    b"38;5;",
    b"48;2;",
    b"999",
    b"0",
    b"]",
    b"P",
    b"_",
    b"^",
    b"\\",
    b"\x07",
    b"\x9b",
    "\u009b".encode(),
    "\u009d".encode(),
    b"\r",
    b"\n",
    b"\t",
    b"\x08",
    b"\x0e",
    b"\x0f",
    b"(",
    b"0",
    b"B",
    b"7",
    b"8",
    b"M",
    b"c",
    b"D",
    b"#",
    b"%",
    b"@",
    b">",
    b":",
    b"$",
    b"\x18",
    "中".encode(),
    "é".encode(),
    b"\xe4",
    b"\xb8",
    b"\xff",
    b"text ",
    b"x" * 200,
]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_escape_sequence_fuzz_never_raises(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    term = TerminalEmulator(cols=rng.randint(2, 100), rows=rng.randint(2, 30), scrollback=100)
    for _ in range(20_000):
        term.feed(b"".join(rng.choices(FRAGMENTS, k=rng.randint(1, 8))))
    term.feed(b"\x07\x1b\\\x1b[?1049l\x1b[0m\r\nthe end")
    assert_clean(term)
    assert "the end" in term.text()


def test_sequences_split_anywhere_give_the_same_screen() -> None:
    data = (
        "\x1b[1;31mred\x1b[0m \x1b]2;title\x07中文 \x1b[38;2;1;2;3mrgb\x1b[0m\r\n"
        "\x1b[?1049h\x1b[Halt\x1b[?1049l\x1b[2;5Hmoved é\x1b[K\x1bP1;2|x\x1b\\end"
    ).encode()
    whole = emulator(data, cols=30, rows=5)
    for cut in range(len(data)):
        split = emulator(data[:cut], cols=30, rows=5)
        split.feed(data[cut:])
        assert split.display_lines() == whole.display_lines(), cut
        assert split.rich_lines() == whole.rich_lines(), cut
        assert split.title == whole.title == "title"


def test_utf8_split_across_feeds() -> None:
    data = "中文 é 😀 ok".encode()
    term = TerminalEmulator()
    for byte in data:
        term.feed(bytes([byte]))
    assert term.display_lines()[0] == "中文 é 😀 ok"


def test_invalid_utf8_and_huge_lines() -> None:
    term = emulator(
        b"bad \xff\xfe\xc3 utf8 \xed\xa0\x80 end\r\n" + b"y" * 1_000_000, scrollback=20_000
    )
    assert term.history_lines()[0] == "bad \ufffd\ufffd\ufffd utf8 \ufffd\ufffd\ufffd end"
    assert term.display_lines()[-1] == "y" * 80
    assert len(term.history_lines()) == 1 + 1_000_000 // 80 - 24
    assert_clean(term)


def test_ten_megabytes_in_64k_chunks() -> None:
    # Build output: short coloured lines, long lines that wrap (with non-ASCII text), plain ones.
    lines = (
        b"2025-01-01 12:00:00 \x1b[32mINFO\x1b[0m building \x1b[1mkyros\x1b[0m step %d\r\n",
        b"\x1b[33mwarning\x1b[0m: src/m\xc3\xb3dulo/\xe4\xb8\xad\xe6\x96\x87.py:%d: a long "
        b"diagnostic message that wraps past the right margin of an 80-column terminal\r\n",
        b"  compiling sources... ok (%d files)\r\n",
    )
    data = b"".join(lines[n % 3] % n for n in range(150_000))[: 10 * 1024 * 1024]
    assert len(data) == 10 * 1024 * 1024
    term = TerminalEmulator()
    # CPU time, not wall time: the check is for pathological slowness, and a busy machine
    # must not make it fail.
    start, wall = time.process_time(), time.perf_counter()
    for pos in range(0, len(data), 65536):
        term.feed(data[pos : pos + 65536])
    elapsed = time.process_time() - start
    print(f"10 MB fed in {elapsed:.2f} s CPU, {time.perf_counter() - wall:.2f} s wall")
    assert elapsed < 10, f"10 MB took {elapsed:.1f} s"
    assert len(term.history_lines()) == 10_000
    assert_clean(term)
