"""How emulator rows become plain text, Rich text and Rich segments.

A pyte cell (``pyte.screens.Char``) holds one glyph and its attributes. A row becomes one
``rich.text.Text`` with one span per run of equal attributes, or a list of ``Segment`` with one
segment per run (what the console's terminal pane draws) — a row of one colour costs one span or
one segment — and each distinct attribute tuple is parsed into a ``rich.style.Style`` once
(:class:`StyleCache`).

Wide characters (CJK, most emoji) take two columns: pyte stores the glyph in the first cell and
an empty string in the second. Rows keep exactly their width in columns: the empty stub is
dropped after a wide glyph, an orphaned stub renders as a space, and a wide glyph that lost its
right half (overwritten, or drawn in the last column) renders as a space too.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from itertools import accumulate, compress, pairwise, repeat
from typing import TypeAlias

from pyte.screens import Char, wcwidth
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text

# fg, bg, bold, italics, underscore, strikethrough, reverse, blink — pyte's Char minus the glyph.
Attrs: TypeAlias = tuple[str, str, bool, bool, bool, bool, bool, bool]

_GLYPH = operator.itemgetter(0)
_FIRST_WIDE = "\u1100"  # no code point below this is two columns wide

# pyte's colour names -> Rich's. "bfightmagenta" is pyte 0.8's spelling for SGR 105.
_NAMED_COLOURS = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
    "brightblack": "bright_black",
    "brightred": "bright_red",
    "brightgreen": "bright_green",
    "brightbrown": "bright_yellow",
    "brightblue": "bright_blue",
    "brightmagenta": "bright_magenta",
    "bfightmagenta": "bright_magenta",
    "brightcyan": "bright_cyan",
    "brightwhite": "bright_white",
}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Truecolour gradients can produce millions of attribute tuples; past this the cache starts over.
_STYLE_CACHE_LIMIT = 4096


def rich_colour(name: str) -> Color | None:
    """A pyte colour (``"red"``, ``"brightred"``, ``"ff8700"``, ``"default"``) as a Rich colour.

    256-colour and truecolour cells arrive from pyte as six hex digits; anything else that is
    not a known name (pyte formats out-of-range truecolour components as longer strings) is
    treated as the default colour.
    """
    named = _NAMED_COLOURS.get(name)
    if named is not None:
        return Color.parse(named)
    if len(name) == 6 and _HEX_DIGITS.issuperset(name):
        return Color.parse("#" + name.lower())
    return None


def attrs_style(attrs: Attrs) -> Style:
    """The Rich style of one attribute tuple; default attributes give the null style."""
    fg, bg, bold, italics, underscore, strikethrough, reverse, blink = attrs
    return Style(
        color=rich_colour(fg),
        bgcolor=rich_colour(bg),
        bold=bold or None,
        italic=italics or None,
        underline=underscore or None,
        strike=strikethrough or None,
        reverse=reverse or None,
        blink=blink or None,
    )


def _fit_glyphs(glyphs: list[str]) -> list[str]:
    """One entry per column: a wide glyph covers its stub column, which becomes ``""``."""
    out = glyphs.copy()
    width = len(glyphs)
    x = 0
    while x < width:
        glyph = out[x]
        if glyph == "":
            out[x] = " "  # a stub whose wide glyph was overwritten
        elif glyph >= _FIRST_WIDE and wcwidth(glyph[0]) == 2:
            if x + 1 < width and glyphs[x + 1] == "":
                x += 2
                continue
            out[x] = " "  # no room for the right half, or the right half was overwritten
        x += 1
    return out


def _glyphs(cells: Sequence[Char]) -> tuple[list[str], bool]:
    """What each column shows, and whether that is one character per column (plain ASCII)."""
    glyphs: list[str] = list(map(_GLYPH, cells))
    joined = "".join(glyphs)
    if len(joined) == len(glyphs) and joined.isascii():
        return glyphs, True
    return _fit_glyphs(glyphs), False


def row_cells(row: Mapping[int, Char], width: int, blank: Char) -> list[Char]:
    """The cells of a sparse pyte row, ``blank`` where nothing was drawn."""
    return list(map(row.get, range(width), repeat(blank, width)))


def cells_text(cells: Sequence[Char]) -> str:
    """The plain text of a row of cells, right-stripped."""
    return "".join(_glyphs(cells)[0]).rstrip()


class StyleCache:
    """Rows of cells as ``rich.text.Text``, each attribute tuple parsed into a style once."""

    def __init__(self) -> None:
        self._styles: dict[Attrs, Style] = {}

    def _style(self, attrs: Attrs) -> Style:
        if len(self._styles) >= _STYLE_CACHE_LIMIT:
            self._styles.clear()
        style = self._styles[attrs] = attrs_style(attrs)
        return style

    def _runs(
        self, cells: Sequence[Char], cursor_x: int | None
    ) -> tuple[str, list[tuple[int, int, Style]]]:
        """A row's plain text and its styled runs as ``(start, stop, style)`` offsets into it.

        ``cursor_x`` draws that column reversed.
        """
        width = len(cells)
        glyphs, simple = _glyphs(cells)
        plain = "".join(glyphs)
        if not width:
            return plain, []
        keys: list[Attrs] = [cell[1:] for cell in cells]
        if cursor_x is not None and 0 <= cursor_x < width:
            if glyphs[cursor_x] == "" and cursor_x > 0:
                cursor_x -= 1  # on the right half of a wide glyph
            fg, bg, bold, italics, underscore, strike, reverse, blink = keys[cursor_x]
            keys[cursor_x] = (fg, bg, bold, italics, underscore, strike, not reverse, blink)
        if keys.count(keys[0]) == width:
            bounds = [0, width]
        else:  # run boundaries found in C: columns whose attributes differ from the one before
            bounds = [0, *compress(range(1, width), map(operator.ne, keys[1:], keys)), width]
        # Column -> offset in ``plain``: they differ after a wide glyph's empty stub column or a
        # glyph with combining marks.
        offsets = range(width + 1) if simple else [0, *accumulate(map(len, glyphs))]
        styles = self._styles
        runs: list[tuple[int, int, Style]] = []
        for start, stop in pairwise(bounds):
            attrs = keys[start]
            style = styles.get(attrs)
            if style is None:
                style = self._style(attrs)
            if offsets[start] < offsets[stop]:
                runs.append((offsets[start], offsets[stop], style))
        return plain, runs

    def text(self, cells: Sequence[Char], cursor_x: int | None = None) -> Text:
        """One row as ``Text``: no trailing newline, no wrapping, one span per styled run.

        ``cursor_x`` draws that column reversed.
        """
        plain, runs = self._runs(cells, cursor_x)
        spans = [Span(start, stop, style) for start, stop, style in runs if style]
        return Text(plain, spans=spans, end="", no_wrap=True)

    def segments(self, cells: Sequence[Char], cursor_x: int | None = None) -> list[Segment]:
        """One row as Rich segments, one per styled run (unstyled runs have no style): what a
        line-oriented renderer draws without laying out a ``Text``.

        ``cursor_x`` draws that column reversed.
        """
        plain, runs = self._runs(cells, cursor_x)
        return [Segment(plain[start:stop], style or None) for start, stop, style in runs]
