"""The screen model behind :mod:`kyros.emulator.terminal`: a pyte ``Screen`` with the
alternate screen (DECSET 1049/1047/47), a compact scrollback that alternate-screen output never
enters, and faster drawing of printable runs.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict, deque
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import pyte
from pyte import modes
from pyte.charsets import LAT1_MAP
from pyte.screens import Char, Margins, StaticDefaultDict, wcwidth

Row = StaticDefaultDict[int, Char]
Buffer = dict[int, Row]
_ALTERNATE_MODES = frozenset({47, 1047, 1049})
_DECCOLM = 3  # 80/132 columns: the size follows the pty, so programs may not change it
_PRINTABLE_CACHE_LIMIT = 65_536
_ATTRS_CACHE_LIMIT = 1024  # distinct attribute sets with cached cells; truecolour can make more
_BLANK = Char(" ")
_BLANK_REVERSE = Char(" ", reverse=True)
# Characters that may not be one column wide; all of ASCII and U+00A0-U+02FF are.
_NOT_LATIN = re.compile("[^ -~\xa0-\u02ff]")


class _Printable(dict[int, int | None]):
    """A ``str.translate`` table keeping what occupies cells: printable and combining chars.

    pyte stops drawing the rest of a chunk at the first unprintable or zero-width
    non-combining character (C0/C1 controls, ZWJ, variation selectors), losing text.
    """

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        width = wcwidth(char)
        keep = width > 0 or (width == 0 and unicodedata.combining(char) != 0)
        if len(self) >= _PRINTABLE_CACHE_LIMIT:
            self.clear()
        value = self[code] = code if keep else None
        return value


_PRINTABLE = _Printable()


class _Glyphs(dict[str, Char]):
    """Shared cells for one set of attributes: a drawn cell costs a dict slot, not a new tuple."""

    def __init__(self, attrs: Char) -> None:
        super().__init__()
        self._attrs = attrs

    def __missing__(self, glyph: str) -> Char:
        cell = self._attrs._replace(data=glyph)
        if len(self) < _PRINTABLE_CACHE_LIMIT:
            self[glyph] = cell
        return cell


@dataclass
class _MainScreen:
    """The main screen while the alternate screen is shown."""

    buffer: Buffer
    x: int
    y: int
    attrs: Char
    margins: Margins | None


class _Screen(pyte.Screen):
    """pyte's screen plus the alternate screen, scrollback, and a faster, lossless ``draw``."""

    def __init__(self, columns: int, lines: int, scrollback: int) -> None:
        # Rows that scrolled off the top, as tuples of cells up to the last one drawn: ~8 bytes
        # a cell (cells are shared, see _Glyphs), so 10,000 rows of 80 columns take ~7 MB.
        self.history: deque[tuple[Char, ...]] = deque(maxlen=scrollback)
        self.main: _MainScreen | None = None
        self._glyphs: dict[Char, _Glyphs] = {}
        super().__init__(columns, lines)
        self.buffer = self._new_buffer()

    # -- alternate screen -------------------------------------------------------------------

    def _new_buffer(self) -> Buffer:
        return defaultdict(self._new_row)

    def _new_row(self) -> Row:
        return StaticDefaultDict(_BLANK_REVERSE if modes.DECSCNM in self.mode else _BLANK)

    @property
    def default_char(self) -> Char:
        return _BLANK_REVERSE if modes.DECSCNM in self.mode else _BLANK

    def _enter_alternate(self, mode: int) -> None:
        if self.main is None:
            cursor = self.cursor
            self.main = _MainScreen(self.buffer, cursor.x, cursor.y, cursor.attrs, self.margins)
            self.buffer = self._new_buffer()
        elif mode != 47:
            self.buffer.clear()  # 1047/1049 always start from a blank alternate screen
        self.dirty.update(range(self.lines))

    def _leave_alternate(self) -> None:
        main, self.main = self.main, None
        if main is None:
            return
        self.buffer, self.margins = main.buffer, main.margins
        self.cursor.x, self.cursor.y, self.cursor.attrs = main.x, main.y, main.attrs
        self.ensure_hbounds()
        self.ensure_vbounds()
        self.dirty.update(range(self.lines))

    def _screen_modes(self, modes_: tuple[int, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
        if not kwargs.get("private"):
            return modes_
        return tuple(m for m in modes_ if m not in _ALTERNATE_MODES and m != _DECCOLM)

    def set_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            for mode in modes_:
                if mode in _ALTERNATE_MODES:
                    self._enter_alternate(mode)
        super().set_mode(*self._screen_modes(modes_, kwargs), **kwargs)

    def reset_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private") and any(m in _ALTERNATE_MODES for m in modes_):
            self._leave_alternate()
        super().reset_mode(*self._screen_modes(modes_, kwargs), **kwargs)

    # -- scrollback ---------------------------------------------------------------------------

    def _to_history(self, row: Row | None) -> None:
        if not self.history.maxlen:
            return
        if not row:
            self.history.append(())
            return
        used = max(row) + 1
        self.history.append(tuple(map(row.get, range(used), repeat(row.default, used))))

    def index(self) -> None:
        """pyte's ``index``, saving the top row when the whole screen scrolls up."""
        margins, cursor = self.margins, self.cursor
        top, bottom = (0, self.lines - 1) if margins is None else margins
        if cursor.y != bottom:  # below the scrolling region the cursor stops at the screen's end
            cursor.y = min(cursor.y + 1, bottom if cursor.y < bottom else self.lines - 1)
            return
        buffer = self.buffer
        if top == 0 and self.main is None:
            self._to_history(buffer.get(0))
        self.dirty.update(range(self.lines))
        get = buffer.get
        for y in range(top, bottom):
            row = get(y + 1)
            if row is None:  # blank rows stay out of the buffer
                buffer.pop(y, None)
            else:
                buffer[y] = row
        buffer.pop(bottom, None)

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        if how == 3:  # xterm: erase the scrollback, not the screen
            self.history.clear()
            return
        super().erase_in_display(how, *args, **kwargs)

    def reset(self) -> None:
        if self.main is not None:
            self._leave_alternate()
        super().reset()
        self.g1_charset = LAT1_MAP  # as xterm: SO selects ASCII until G1 is designated

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        lines, columns = lines or self.lines, columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        if self.main is not None:
            main = self.main
            main.y = self._fit(main.buffer, main.y, lines, columns, keep=True)
            main.x, main.margins = min(main.x, columns - 1), None
        self.cursor.y = self._fit(self.buffer, self.cursor.y, lines, columns, self.main is None)
        self.cursor.x = min(self.cursor.x, columns)
        if columns > self.columns:
            self.tabstops.update(range(self.columns - self.columns % 8 + 8, columns, 8))
        self.lines, self.columns, self.margins = lines, columns, None
        self.dirty.update(range(lines))

    def _fit(self, buffer: Buffer, cursor_y: int, lines: int, columns: int, keep: bool) -> int:
        """Fit ``buffer`` to a new size; rows scrolled off the top go to history if ``keep``.

        Shrinking keeps the cursor row on screen, as xterm does: rows go off the top only as
        far as needed, blank rows below the cursor are dropped first.
        """
        excess = cursor_y + 1 - lines
        if excess > 0:
            for y in range(self.lines):
                row = buffer.pop(y, None)
                if y < excess:
                    if keep:
                        self._to_history(row)
                elif row is not None:
                    buffer[y - excess] = row
            cursor_y -= excess
        for y in [y for y in buffer if y >= lines]:
            del buffer[y]
        if columns < self.columns:
            for row in buffer.values():
                for x in [x for x in row if x >= columns]:
                    del row[x]
        return cursor_y

    # -- drawing ------------------------------------------------------------------------------

    def draw(self, data: str) -> None:
        charset = self.g1_charset if self.charset else self.g0_charset
        if charset is not LAT1_MAP:
            data = data.translate(charset)
        narrow = data.isascii()
        if not (narrow and data.isprintable()):
            data = data.translate(_PRINTABLE)
            if not data:
                return
            narrow = data.isascii()
        cursor = self.cursor
        glyphs = self._glyphs.get(cursor.attrs)
        if glyphs is None:
            if len(self._glyphs) >= _ATTRS_CACHE_LIMIT:
                self._glyphs.clear()
            glyphs = self._glyphs[cursor.attrs] = _Glyphs(cursor.attrs)
        if modes.IRM in self.mode:
            self._draw_each(data, glyphs)
        elif narrow:
            self._draw_narrow(data, glyphs)
        else:
            self._draw_mixed(data, glyphs)

    def _draw_mixed(self, data: str, glyphs: _Glyphs) -> None:
        """Text beyond ASCII: single-column stretches still in bulk, the rest one at a time."""
        start = 0
        for match in _NOT_LATIN.finditer(data):
            end = match.start()
            if wcwidth(data[end]) == 1:
                continue  # Greek, Cyrillic, box drawing...: part of the stretch
            if start < end:
                self._draw_narrow(data[start:end], glyphs)
            self._draw_each(data[end], glyphs)
            start = end + 1
        if start < len(data):
            self._draw_narrow(data[start:], glyphs)

    def _draw_narrow(self, data: str, glyphs: _Glyphs) -> None:
        """Single-column glyphs in replace mode: whole row segments at a time."""
        cursor = self.cursor
        x, count = cursor.x, len(data)
        if x + count <= self.columns:  # the common case: no wrapping
            self.buffer[cursor.y].update(
                zip(range(x, x + count), map(glyphs.__getitem__, data), strict=False)
            )
            cursor.x = x + count
            self.dirty.add(cursor.y)
        else:
            self._draw_wrapping(data, glyphs)

    def _wrap(self) -> None:
        self.dirty.add(self.cursor.y)
        self.carriage_return()
        self.linefeed()

    def _draw_wrapping(self, data: str, glyphs: _Glyphs) -> None:
        cursor, columns = self.cursor, self.columns
        autowrap = modes.DECAWM in self.mode
        pos, end = 0, len(data)
        while pos < end:
            if cursor.x >= columns:
                if not autowrap:  # the last column takes each further glyph in turn
                    self.buffer[cursor.y][columns - 1] = glyphs[data[-1]]
                    break
                self._wrap()
            x = cursor.x
            count = min(end - pos, columns - x)
            row = self.buffer[cursor.y]
            row.update(
                zip(
                    range(x, x + count),
                    map(glyphs.__getitem__, data[pos : pos + count]),
                    strict=False,
                )
            )
            pos += count
            cursor.x = x + count
        self.dirty.add(cursor.y)

    def _draw_each(self, data: str, glyphs: _Glyphs) -> None:
        """Any glyphs, one at a time: wide glyphs, combining marks, insert mode."""
        cursor, columns = self.cursor, self.columns
        for char in data:
            width = wcwidth(char)
            if cursor.x >= columns and width > 0:
                if modes.DECAWM in self.mode:
                    self._wrap()
                else:
                    cursor.x = max(0, columns - width)
            if width == 2 and cursor.x == columns - 1 and modes.DECAWM in self.mode:
                self.buffer[cursor.y][cursor.x] = glyphs[" "]  # no room: wrap it, as xterm
                self._wrap()
            if modes.IRM in self.mode and width > 0:
                self.insert_characters(width)
            row = self.buffer[cursor.y]
            if width == 1:
                row[cursor.x] = glyphs[char]
            elif width == 2:
                row[cursor.x] = glyphs[char]
                if cursor.x + 1 < columns:
                    row[cursor.x + 1] = glyphs[""]
            else:
                self._combine(char)
            if width > 0:
                cursor.x = min(cursor.x + width, columns)
        self.dirty.add(cursor.y)

    def _combine(self, mark: str) -> None:
        """Join a combining mark to the glyph before the cursor."""
        x, y = self.cursor.x - 1, self.cursor.y
        if x < 0:
            if y == 0:
                return
            x, y = self.columns - 1, y - 1
        row = self.buffer[y]
        if x > 0 and row[x].data == "":
            x -= 1  # the right half of a wide glyph
        last = row[x]
        row[x] = last._replace(data=unicodedata.normalize("NFC", last.data + mark))

    # -- queries ------------------------------------------------------------------------------

    def cursor_report(self) -> tuple[int, int]:
        """``(row, col)`` as a cursor position report gives them, as xterm: 1-based, the row
        counted from the top margin in origin mode (DECOM), a cursor waiting to wrap in the
        last column."""
        cursor = self.cursor
        row = cursor.y + 1
        if modes.DECOM in self.mode and self.margins is not None:
            row -= self.margins.top
        return max(1, row), min(cursor.x, self.columns - 1) + 1

    def report_device_attributes(self, mode: int = 0, **kwargs: bool) -> None:
        """Not answered here: queries that reach pyte's parser lost their prefix (``CSI > c``
        arrives as ``CSI c``). The stream answers the complete ones (``_Stream._answer``)."""

    def report_device_status(self, mode: int, **kwargs: bool) -> None:
        """Not answered here, as :meth:`report_device_attributes`."""

    def write_process_input(self, data: str) -> None:
        """Nothing pyte produces goes to the program: the stream answers queries itself."""

    def set_title(self, param: str) -> None:
        self.title = param
