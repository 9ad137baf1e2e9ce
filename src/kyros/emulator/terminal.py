"""A terminal emulator model: pty output in, screen text and Rich lines out.

``TerminalEmulator`` feeds bytes through a pyte stream into a pyte screen and adds what pyte
lacks: the alternate screen (DECSET 1049/1047/47), a compact scrollback that alternate-screen
output never enters, faster drawing, and removal of every string sequence (OSC, DCS, SOS, PM,
APC) before pyte sees it. Nothing it is fed ever reaches a real terminal: clipboard (OSC 52)
and title (OSC 0/1/2) requests go nowhere; the title is only recorded (RELIABILITY S13).

Its one output is the answer to the few queries a program waits for, given to the ``on_reply``
callback (no callback: no answers) for the owner to type back into the pty:

- the cursor position report, ``CSI 6 n`` → ``CSI row ; col R`` and ``CSI ? 6 n`` →
  ``CSI ? row ; col R``: 1-based, the row counted from the top margin in origin mode (DECOM),
  the column never past the last (a cursor waiting to wrap is in the last column), as xterm;
- the operating status, ``CSI 5 n`` → ``CSI 0 n`` ("no malfunction");
- primary device attributes, ``CSI c`` and ``CSI 0 c`` → :data:`PRIMARY_DA` (a VT220 with
  ANSI colour).

Readline, fish, vim and prompt toolkits ask these and stall or misplace their prompt without
an answer, and the answers say nothing but where the cursor is and that a terminal is there.
Every other query stays unanswered — secondary and tertiary DA (``CSI > c``, ``CSI = c``), other
DSRs, DECRQM, XTVERSION, window and title reports, and whatever a string holds (DECRQSS,
XTGETTCAP, OSC colour queries; strings are removed unread): their answers would be input the
session never typed. A query split between two ``feed`` calls is answered once, when its last
byte arrives: an unfinished CSI at the end of a chunk is held for the next one.

Rendering (``rich_lines``) returns one ``rich.text.Text`` per screen row, ``row_segments`` one
row as Rich segments, and ``take_dirty`` the rows changed since it was last called, so a view
redraws only those; see :mod:`kyros.emulator.style` for how cells become styles. The modes a
program sets for its input (application cursor keys, bracketed paste) are readable too: the
side that sends keystrokes needs them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pyte
from pyte import modes
from pyte.screens import Char
from rich.segment import Segment
from rich.text import Text

from kyros.emulator.screen import _Screen
from kyros.emulator.style import StyleCache, cells_text, row_cells

_ESC = "\x1b"
_TITLE_LIMIT = 256
_OSC_PAYLOAD_LIMIT = 1024  # enough for "2;<title>"; longer payloads (OSC 52 data) are skipped
_SGR_CACHE_LIMIT = 4096
# pyte keeps private (DEC) modes shifted left by 5 in ``Screen.mode``.
_DECCKM = 1 << 5  # application cursor keys: arrows send ESC O A, not ESC [ A
_BRACKETED_PASTE = 2004 << 5

# ESC P (DCS), ESC X (SOS), ESC ] (OSC), ESC ^ (PM), ESC _ (APC), and their C1 forms.
_STRING_INTRODUCERS = frozenset("PX]^_")
_C1_STRINGS = {"\x90": "P", "\x98": "X", "\x9d": "]", "\x9e": "^", "\x9f": "_"}
_STRING_START = re.compile("\x1b[PX\\]^_]|[\x90\x98\x9d\x9e\x9f]|\x1b\\Z")
# BEL and ST (ESC \ or C1 0x9c) end a string; CAN and SUB abort it; any other ESC ends it too.
_STRING_END = re.compile("[\x07\x18\x1a\x1b\x9c]")
# A complete CSI sequence: prefix, parameters, intermediates, final byte.
_CSI = re.compile("(?:\x1b\\[|\x9b)([<=>?]?)([0-9;:]*)([ -/]*)([@-~])")
# The start of a CSI the chunk ended in: held until its final byte comes with the next chunk.
_CSI_UNFINISHED = re.compile("(?:\x1b\\[|\x9b)[<=>?]?[0-9;:]*[ -/]*\\Z")
# Longer unfinished sequences go to pyte's parser as they come (no query is this long).
_HELD_LIMIT = 256
#: The answer to primary device attributes: a VT220 (62) with ANSI colour (22). pyte's own
#: answer, ``CSI ? 6 c``, is a VT102, which some programs take for a terminal without colour;
#: the emulator draws SGR colours (256 and direct too) and VT220 controls such as C1 CSI, and
#: claims nothing more (no 132 columns, sixels, soft fonts or printer).
PRIMARY_DA = "\x1b[?62;22c"


class _StringFilter:
    """Removes OSC/DCS/SOS/PM/APC strings from decoded text, across ``filter`` calls.

    pyte draws the payload of DCS, APC, PM and SOS as text, and an unterminated OSC swallows all
    later output; here each string ends at BEL, ST, CAN, SUB or the next ESC, as in the VT500
    parser xterm follows. OSC 0 and 2 set the title through ``on_title``.
    """

    _GROUND, _ESCAPE, _STRING, _STRING_ESCAPE = range(4)

    def __init__(self, on_title: Callable[[str], None]) -> None:
        self._on_title = on_title
        self._state = self._GROUND
        self._osc = False
        self._payload: list[str] = []
        self._payload_len = 0

    def _begin(self, introducer: str) -> None:
        self._state = self._STRING
        self._osc = introducer == "]"
        self._payload.clear()
        self._payload_len = 0

    def _collect(self, chunk: str) -> None:
        if self._osc and chunk and self._payload_len < _OSC_PAYLOAD_LIMIT:
            self._payload.append(chunk)
            self._payload_len += len(chunk)

    def _finish(self, dispatch: bool) -> None:
        if dispatch and self._osc and self._payload_len <= _OSC_PAYLOAD_LIMIT:
            code, _, value = "".join(self._payload).partition(";")
            if code in ("0", "2"):
                self._on_title("".join(ch for ch in value if ch.isprintable())[:_TITLE_LIMIT])
        self._payload.clear()
        self._payload_len = 0
        self._state = self._GROUND

    def filter(self, text: str) -> str:
        out: list[str] = []
        pos, end = 0, len(text)
        while pos < end:
            state = self._state
            if state == self._GROUND:
                match = _STRING_START.search(text, pos)
                if match is None:
                    out.append(text[pos:])
                    break
                out.append(text[pos : match.start()])
                pos = match.end()
                start = match.group()
                if start == _ESC:  # the last character: what it starts is in the next chunk
                    self._state = self._ESCAPE
                else:
                    self._begin(_C1_STRINGS.get(start, start[-1]))
            elif state == self._ESCAPE:
                if text[pos] in _STRING_INTRODUCERS:
                    self._begin(text[pos])
                    pos += 1
                else:
                    out.append(_ESC)  # an ordinary escape sequence: pyte parses it
                    self._state = self._GROUND
            elif state == self._STRING:
                match = _STRING_END.search(text, pos)
                if match is None:
                    self._collect(text[pos:])
                    break
                self._collect(text[pos : match.start()])
                pos = match.end()
                char = match.group()
                if char == _ESC:
                    self._state = self._STRING_ESCAPE
                else:
                    self._finish(dispatch=char not in "\x18\x1a")
            else:  # _STRING_ESCAPE
                self._finish(dispatch=True)
                if text[pos] == "\\":
                    pos += 1
                else:
                    self._state = self._ESCAPE  # ESC starts the next sequence
        return "".join(out)


class _Stream(pyte.ByteStream):
    """pyte's byte stream behind the string filter: UTF-8 always, complete CSIs fast, no raising.

    pyte's parser takes escape sequences one character at a time (~1 µs each); a complete CSI
    sequence at ground state is parsed here with one regex match instead, which triples the
    throughput of colourful output. A CSI split between chunks is held (:data:`_HELD_LIMIT`
    characters at most) and parsed here too once complete, so a query's prefix is never lost:
    pyte's parser reads ``CSI > c`` as ``CSI c``. Unusual sequences (a control character inside a
    CSI, an overlong one) still go through pyte's parser, which answers no query.
    """

    def __init__(self, screen: _Screen, on_reply: Callable[[bytes], None] | None) -> None:
        self._strings = _StringFilter(screen.set_title)
        self._screen = screen
        self._on_reply = on_reply
        self._held = ""  # an unfinished CSI the last chunk ended in
        self._sgr: dict[tuple[Char, str], Char] = {}
        super().__init__(screen)
        # pyte honours charset designations (ESC ( 0 line drawing, SO/SI) only when it believes
        # the input is not UTF-8; decoding is done in ``feed``, always as UTF-8.
        self.use_utf8 = False
        self._basic = {char: getattr(screen, name) for char, name in self.basic.items()}
        self._csi = {final: getattr(screen, name) for final, name in self.csi.items()}

    def feed(self, data: bytes) -> None:  # type: ignore[override]  # as pyte's ByteStream
        text = self._strings.filter(self.utf8_decoder.decode(data))
        if self._held:
            text, self._held = self._held + text, ""
        draw = self._screen.draw
        match_text = self._text_pattern.match
        match_csi = _CSI.match
        basic = self._basic
        send = self._send_to_parser
        ground = bool(self._taking_plain_text)
        pos, end = 0, len(text)
        while pos < end:
            try:
                if ground:
                    match = match_text(text, pos)
                    if match is not None:
                        pos = match.end()
                        draw(match.group())
                        continue
                    handler = basic.get(text[pos])
                    if handler is not None:
                        pos += 1
                        handler()
                        continue
                    match = match_csi(text, pos)
                    if match is not None:
                        pos = match.end()
                        self._dispatch_csi(*match.groups())
                        continue
                    if end - pos <= _HELD_LIMIT and _CSI_UNFINISHED.match(text, pos):
                        self._held = text[pos:]
                        break
                pos += 1
                ground = bool(send(text[pos - 1]))
            except Exception:
                # Malformed input makes pyte raise (a CSI with too many parameters, a Unicode
                # digit as a parameter); pyte has reset its parser to ground state. The failed
                # element is dropped, the rest of the output still drawn.
                ground = True
        self._taking_plain_text = ground

    def reset_parser(self) -> None:
        """Back to ground state, forgetting any sequence begun (after an unexpected error)."""
        self._held = ""
        self._initialize_parser()

    def _dispatch_csi(self, prefix: str, params: str, intermediates: str, final: str) -> None:
        if final in "nc":  # queries: only the few in the module docstring are answered
            if self._on_reply is not None and not intermediates:
                self._answer(prefix, params, final)
            return
        handler = self._csi.get(final)
        if handler is None or intermediates or prefix in ("<", "=", ">"):
            return  # unsupported; ``CSI > 4;2 m`` (key modifiers) is not SGR 4;2
        if final == "m" and not prefix:
            self._select_graphic_rendition(params)
            return
        if ":" in params:
            if final != "m":
                return
            args = _sgr_subparams(params)
        else:
            args = [min(int(p or 0), 9999) for p in params.split(";")]
        if prefix == "?":
            handler(*args, private=True)
        else:
            handler(*args)

    def _answer(self, prefix: str, params: str, final: str) -> None:
        """Answer DSR 6 (plain and DEC), DSR 5 and primary DA; nothing else."""
        assert self._on_reply is not None
        value = int(params) if params.isdigit() else None  # one parameter only
        if final == "c":
            if prefix == "" and (params == "" or value == 0):
                self._on_reply(PRIMARY_DA.encode())
            return
        if value == 6 and prefix in ("", "?"):
            row, col = self._screen.cursor_report()
            self._on_reply(f"\x1b[{prefix}{row};{col}R".encode())
        elif value == 5 and prefix == "":
            self._on_reply(b"\x1b[0n")

    def _select_graphic_rendition(self, params: str) -> None:
        """SGR through a cache: the same few colour changes repeat throughout any output."""
        screen = self._screen
        key = (screen.cursor.attrs, params)
        attrs = self._sgr.get(key)
        if attrs is not None:
            screen.cursor.attrs = attrs
            return
        if ":" in params:
            args = _sgr_subparams(params)
        else:
            args = [min(int(p or 0), 9999) for p in params.split(";")]
        screen.select_graphic_rendition(*args)
        if modes.DECSCNM not in screen.mode:  # reverse-video screens change the defaults
            if len(self._sgr) >= _SGR_CACHE_LIMIT:
                self._sgr.clear()
            self._sgr[key] = screen.cursor.attrs

    def select_other_charset(self, code: str) -> None:
        """ESC % @ would switch decoding to Latin-1 for good: ignored."""


def _sgr_subparams(params: str) -> list[int]:
    """SGR with colon sub-parameters (``38:5:208``, ``38:2::1:2:3``, ``4:3``) as pyte's list."""
    args: list[int] = []
    for group in params.split(";"):
        sub = [min(int(p or 0), 9999) for p in group.split(":")]
        if sub[0] in (38, 48) and len(sub) >= 3:
            args += [sub[0], 2, *sub[-3:]] if sub[1] == 2 else sub[:3]
        elif sub[0] == 4:
            args.append(24 if sub[1:2] == [0] else 4)  # underline styles: on or off
        else:
            args.append(sub[0])
    return args


class TerminalEmulator:
    """The screen, scrollback and title of one terminal, fed with the bytes its pty writes.

    ``on_reply`` is called, during :meth:`feed`, with the bytes that answer a query the output
    made (see the module docstring), for the caller to write to the program's input in order
    with typed keys; without it no query is answered. It must not feed this emulator.
    Thread-unsafe; feed and read from one thread (the daemon's event loop).
    """

    def __init__(
        self,
        cols: int = 80,
        rows: int = 24,
        scrollback: int = 10_000,
        *,
        on_reply: Callable[[bytes], None] | None = None,
    ) -> None:
        if cols < 1 or rows < 1 or scrollback < 0:
            raise ValueError(f"bad terminal size {cols}x{rows} or scrollback {scrollback}")
        if on_reply is not None and not callable(on_reply):
            raise TypeError(f"on_reply must be callable, not {type(on_reply).__name__}")
        self._screen = _Screen(cols, rows, scrollback)
        self._stream = _Stream(self._screen, on_reply)
        self._styles = StyleCache()

    @property
    def cols(self) -> int:
        return self._screen.columns

    @property
    def rows(self) -> int:
        return self._screen.lines

    def feed(self, data: bytes) -> None:
        """Consume output of the program; any bytes at all, split anywhere."""
        try:
            self._stream.feed(data)
        except Exception:
            # Not expected (``_Stream`` absorbs parser errors); losing the rest of one chunk
            # is better than a dead terminal.
            self._stream.reset_parser()

    def resize(self, rows: int, cols: int) -> None:
        """Follow a resize of the pty; the cursor row stays on screen."""
        self._screen.resize(max(1, rows), max(1, cols))

    @property
    def cursor(self) -> tuple[int, int]:
        """``(row, col)``, 0-based, always on screen."""
        cursor = self._screen.cursor
        return cursor.y, min(cursor.x, self._screen.columns - 1)

    @property
    def cursor_visible(self) -> bool:
        return not self._screen.cursor.hidden

    @property
    def title(self) -> str:
        """The last title set with OSC 0 or 2, printable characters only. Never emitted."""
        return self._screen.title

    @property
    def in_alternate_screen(self) -> bool:
        return self._screen.main is not None

    def display_lines(self) -> list[str]:
        """The visible screen as plain text, one right-stripped string per row."""
        screen = self._screen
        buffer, width, blank = screen.buffer, screen.columns, screen.default_char
        return [cells_text(row_cells(buffer.get(y, {}), width, blank)) for y in range(screen.lines)]

    def history_lines(self) -> list[str]:
        """The scrollback above the screen, oldest first (empty while none has scrolled off)."""
        return [cells_text(cells) for cells in self._screen.history]

    def text(self, include_history: bool = True) -> str:
        """History and screen as one text, trailing blank lines dropped (``kyros term logs``).

        While a full-screen program runs this is the alternate screen, as a user would see it.
        """
        lines = self.history_lines() if include_history else []
        lines += self.display_lines()
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)

    def rich_lines(self, show_cursor: bool = False) -> list[Text]:
        """The visible screen as one ``Text`` per row, each exactly ``cols`` cells wide.

        Texts have no trailing newline and do not wrap. With ``show_cursor`` the cursor cell
        is drawn reversed (unless the program hid the cursor).
        """
        screen = self._screen
        buffer, width, blank = screen.buffer, screen.columns, screen.default_char
        cursor_y, cursor_x = self.cursor
        if not show_cursor or screen.cursor.hidden:
            cursor_y = -1
        rows = (row_cells(buffer.get(y, {}), width, blank) for y in range(screen.lines))
        text = self._styles.text
        return [text(cells, cursor_x if y == cursor_y else None) for y, cells in enumerate(rows)]

    def row_segments(self, y: int, show_cursor: bool = False) -> list[Segment]:
        """Row ``y`` of the visible screen as Rich segments, ``cols`` cells wide in all.

        With ``show_cursor`` the cursor cell is drawn reversed when it is on this row (unless
        the program hid the cursor).
        """
        screen = self._screen
        cells = row_cells(screen.buffer.get(y, {}), screen.columns, screen.default_char)
        cursor_y, cursor_x = self.cursor
        on_row = show_cursor and y == cursor_y and not screen.cursor.hidden
        return self._styles.segments(cells, cursor_x if on_row else None)

    def take_dirty(self) -> set[int]:
        """The rows changed since the last call (all of them at first), and forget them.

        Cursor moves are not changes: a view that draws the cursor follows :attr:`cursor`.
        """
        dirty = {y for y in self._screen.dirty if y < self._screen.lines}
        self._screen.dirty.clear()
        return dirty

    @property
    def application_cursor_keys(self) -> bool:
        """DECCKM is set: arrow, home and end keys are sent as ``ESC O x`` (vim, less, htop)."""
        return _DECCKM in self._screen.mode

    @property
    def bracketed_paste(self) -> bool:
        """The program asked for pastes wrapped in ``ESC [200~`` … ``ESC [201~``."""
        return _BRACKETED_PASTE in self._screen.mode
